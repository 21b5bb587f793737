//! Lesson: the managed dict and list have Python's whole method set, each
//! call one round trip to the manager (Python's `manager.dict({...})`,
//! `manager.list([...])`, `d.setdefault`, `d.update`, `l.extend`,
//! `l[a:b] = ...`, `l.sort()`), and a `BaseManager` can register a factory
//! that makes a new object for every request (Python's
//! `register(typeid, callable)`).
//!
//! Run with `cargo run --example manager_methods`.

use std::collections::HashMap;

use mproc::{DictProxy, ListProxy, Manager};

/// A child's share of the work: count words into the dict, note the
/// longest one in the list.
#[mproc::process]
fn count_words(counts: DictProxy<String, u32>, longest: ListProxy<String>, text: String) {
    for word in text.split_whitespace() {
        let n = counts.setdefault(word.to_string(), 0).unwrap();
        counts.insert(word.to_string(), n + 1).unwrap();
    }
    let long = text
        .split_whitespace()
        .max_by_key(|w| w.len())
        .unwrap_or("");
    longest.push(long.to_string()).unwrap();
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let m = Manager::start()?;

    // Made with initial contents.
    let counts = m.dict_from(HashMap::from([("the".to_string(), 0u32)]))?;
    let longest = m.list_from(Vec::<String>::new())?;
    let texts = ["the quick brown fox", "jumps over the lazy dog"];
    // One process at a time: `setdefault` + `insert` is two calls, not
    // one atomic increment.
    for text in texts {
        mproc::spawn(
            count_words,
            (counts.clone(), longest.clone(), text.to_string()),
        )?
        .join()?;
    }
    let mut words = counts.items()?;
    words.sort();
    println!("counts: {words:?}");
    println!("'the' appears {:?} times", counts.get(&"the".to_string())?);
    counts.update([("fox".to_string(), 10), ("cat".to_string(), 1)])?;
    println!(
        "after update: fox={:?} cat={:?} len={}",
        counts.get(&"fox".to_string())?,
        counts.get(&"cat".to_string())?,
        counts.len()?
    );

    // The list: extend, insert, slices, index/count, sort, pop.
    longest.extend(["ant".to_string(), "bee".to_string()])?;
    longest.insert(0, "zebra".to_string())?;
    println!("list: {:?}", longest.to_vec()?);
    longest.set_slice(1..3, ["yak".to_string()])?; // l[1:3] = ["yak"]
    println!("after l[1:3] = [\"yak\"]: {:?}", longest.to_vec()?);
    println!(
        "index of \"ant\": {:?}, count of \"yak\": {}",
        longest.index(&"ant".to_string())?,
        longest.count(&"yak".to_string())?
    );
    longest.sort()?;
    println!("sorted: {:?}", longest.to_vec()?);
    println!(
        "pop: {:?}, pop(0): {:?}",
        longest.pop()?,
        longest.pop_at(0)?
    );
    longest.del_slice(0..1)?; // del l[0:1]
    println!("left: {:?}", longest.to_vec()?);
    m.shutdown()?;

    // A factory: every `create` makes a new list, from arguments.
    let server = mproc::BaseManager::bind("127.0.0.1:0", b"secret")
        .register_with("numbers", |(from, to): (i64, i64)| {
            (from..to).collect::<Vec<i64>>()
        })
        .start()?;
    let client = mproc::BaseManager::connect(server.address(), b"secret")?;
    let a: ListProxy<i64> = client.create("numbers", (0i64, 3i64))?;
    let b: ListProxy<i64> = client.create("numbers", (10i64, 12i64))?;
    a.push(3)?;
    println!(
        "two lists from one factory: {:?} {:?}",
        a.to_vec()?,
        b.to_vec()?
    );
    server.shutdown()?;
    Ok(())
}
