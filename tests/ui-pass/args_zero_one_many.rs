#![deny(warnings)]

use mproc::Task;

#[mproc::process]
fn tick() -> u32 {
    7
}

#[mproc::process]
fn greet(name: String) -> String {
    format!("hello {name}")
}

#[mproc::process]
fn add(x: i64, y: i64) -> i64 {
    x + y
}

#[mproc::process]
fn volume(x: u64, y: u64, z: u64) {
    let _ = x * y * z;
}

fn args_of<T: Task>(_: T, args: T::Args) -> T::Args {
    args
}

fn main() {
    assert_eq!(tick(), 7);
    assert_eq!(greet("bob".to_string()), "hello bob");
    assert_eq!(add(1, 2), 3);
    volume(1, 2, 3);

    // `Args` is `()`, the bare type, or a tuple.
    let () = args_of(tick, ());
    let _: String = args_of(greet, String::new());
    let _: (i64, i64) = args_of(add, (1, 2));
    let _: (u64, u64, u64) = args_of(volume, (1, 2, 3));

    assert_eq!(tick.call(()), 7);
    assert_eq!(greet.call("ann".to_string()), "hello ann");
    assert_eq!(add.call((4, 5)), 9);
    assert_eq!(add.name(), concat!(module_path!(), "::add"));
}
