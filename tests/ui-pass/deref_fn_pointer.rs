#![deny(warnings)]

#[mproc::process]
fn add(x: i64, y: i64) -> i64 {
    x + y
}

#[mproc::process]
fn square(x: i64) -> i64 {
    x * x
}

fn main() {
    assert_eq!((*add)(1, 2), 3);
    assert_eq!([1, 2].map(*square), [1, 4]);
    let f: fn(i64, i64) -> i64 = *add;
    assert_eq!(f(2, 3), 5);
    let total: i64 = (1..=3).map(*square).sum();
    assert_eq!(total, 14);
}
