//! The runtime's layering rules, checked on its source (see
//! `runtime/README.md`): which folder may use which, where `unsafe` and
//! `libc` may appear, and that every other folder forbids `unsafe`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/runtime/src");

const FOLDERS: [&str; 13] = [
    "channel",
    "connection",
    "context",
    "error",
    "ipc",
    "manager",
    "pool",
    "process",
    "shm",
    "start",
    "sync",
    "sys",
    "wait",
];

/// The table in `runtime/README.md` ("folder → folders it uses"), read
/// from the README itself, so that the document and the code cannot drift
/// apart: a row is `| \`folder\` | \`a\`, \`b\` |` (or `nothing`).
fn allowed() -> BTreeMap<String, BTreeSet<String>> {
    let readme = concat!(env!("CARGO_MANIFEST_DIR"), "/runtime/README.md");
    let text = fs::read_to_string(readme).unwrap();
    let names = |cell: &str| -> Vec<String> {
        cell.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    };
    let mut table = BTreeMap::new();
    for line in text.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // `| a | b |` splits into ["", a, b, ""].
        if cells.len() != 4 {
            continue;
        }
        let (folder, uses) = (names(cells[1]), cells[2]);
        let [folder] = folder.as_slice() else {
            continue;
        };
        if !FOLDERS.contains(&folder.as_str()) {
            continue;
        }
        let uses = names(uses);
        assert!(
            !uses.is_empty() || cells[2] == "nothing",
            "README row for {folder} names no folder: {line}"
        );
        table.insert(folder.clone(), uses.into_iter().collect());
    }
    table
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every source file of a folder, with its code lines (comments dropped).
fn folder(name: &str) -> Vec<(PathBuf, Vec<String>)> {
    let mut files = Vec::new();
    rust_files(&Path::new(SRC).join(name), &mut files);
    files
        .into_iter()
        .map(|p| {
            let text = fs::read_to_string(&p).unwrap();
            let code = text
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .map(str::to_owned)
                .collect();
            (p, code)
        })
        .collect()
}

/// The folders a line names as `crate::x` (or inside `crate::{x, y}`).
fn crate_uses(line: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (i, _) in line.match_indices("crate::") {
        let rest = &line[i + "crate::".len()..];
        let names: Vec<&str> = match rest.strip_prefix('{') {
            Some(group) => group
                .split('}')
                .next()
                .unwrap_or("")
                .split(',')
                .map(|s| s.trim().split("::").next().unwrap_or(""))
                .collect(),
            None => vec![
                rest.split(|c: char| !c.is_alphanumeric() && c != '_')
                    .next()
                    .unwrap(),
            ],
        };
        found.extend(names.into_iter().map(str::to_owned));
    }
    found
}

#[test]
fn folders_use_only_the_layers_below_them() {
    let allowed = allowed();
    // Every folder but `error.rs` has a row.
    let rows: Vec<&str> = allowed.keys().map(String::as_str).collect();
    let expected: Vec<&str> = FOLDERS.iter().copied().filter(|f| *f != "error").collect();
    assert_eq!(rows, expected, "runtime/README.md's table has rows for");
    let mut wrong = Vec::new();
    for (name, may) in &allowed {
        for (path, code) in folder(name) {
            for line in &code {
                for used in crate_uses(line) {
                    let is_folder = FOLDERS.contains(&used.as_str());
                    if is_folder && used != *name && !may.contains(&used) {
                        wrong.push(format!("{}: uses {used}: {line}", path.display()));
                    }
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "arrows that break the layering:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn only_sys_names_libc() {
    let mut wrong = Vec::new();
    for name in FOLDERS.iter().filter(|f| **f != "sys" && **f != "error") {
        for (path, code) in folder(name) {
            wrong.extend(
                code.iter()
                    .filter(|l| l.contains("libc::"))
                    .map(|l| format!("{}: {l}", path.display())),
            );
        }
    }
    assert!(wrong.is_empty(), "libc outside sys/:\n{}", wrong.join("\n"));
}

#[test]
fn unsafe_code_lives_in_sys_and_shm_only() {
    let mut wrong = Vec::new();
    for name in FOLDERS
        .iter()
        .filter(|f| !["sys", "shm", "error"].contains(f))
    {
        for (path, code) in folder(name) {
            // The public contract makes `mproc::fork` an `unsafe fn`.
            if path.ends_with("start/fork.rs") {
                continue;
            }
            wrong.extend(
                code.iter()
                    .filter(|l| l.contains("unsafe ") && !l.contains("unsafe_code"))
                    .map(|l| format!("{}: {l}", path.display())),
            );
        }
    }
    assert!(
        wrong.is_empty(),
        "unsafe outside sys/ and shm/:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn every_other_folder_forbids_unsafe() {
    for name in FOLDERS
        .iter()
        .filter(|f| !["sys", "shm", "start", "error"].contains(f))
    {
        let root = fs::read_to_string(Path::new(SRC).join(name).join("mod.rs")).unwrap();
        assert!(
            root.contains("#![forbid(unsafe_code)]"),
            "{name}/mod.rs does not forbid unsafe code"
        );
    }
    let error = fs::read_to_string(Path::new(SRC).join("error.rs")).unwrap();
    assert!(error.contains("#![forbid(unsafe_code)]"));
    let lib = fs::read_to_string(Path::new(SRC).join("lib.rs")).unwrap();
    assert!(lib.contains("#![deny(unsafe_code)]"));
}

#[test]
fn the_top_level_holds_only_lib_error_and_folders() {
    let mut loose: Vec<String> = fs::read_dir(SRC)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    loose.sort();
    assert_eq!(loose, ["error.rs", "lib.rs"]);
}

#[test]
fn the_checker_sees_a_crossing() {
    // The parser the tests above rely on finds both forms of a use.
    assert_eq!(crate_uses("use crate::pool::Pool;"), ["pool"]);
    assert_eq!(
        crate_uses("use crate::{manager, sys::PollFd};"),
        ["manager", "sys"]
    );
    assert!(crate_uses("let x = 1;").is_empty());
}
