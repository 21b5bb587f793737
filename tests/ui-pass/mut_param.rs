#![deny(warnings)]

use mproc::Task;

#[mproc::process]
fn countdown(mut x: i64) -> i64 {
    while x > 3 {
        x -= 1;
    }
    x
}

#[mproc::process]
fn push(mut v: Vec<u8>, item: u8) -> Vec<u8> {
    v.push(item);
    v
}

fn main() {
    assert_eq!(countdown(10), 3);
    assert_eq!(countdown.call(5), 3);
    assert_eq!(push(vec![1], 2), [1, 2]);
    assert_eq!(push.call((vec![], 9)), [9]);
}
