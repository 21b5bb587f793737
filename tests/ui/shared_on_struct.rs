#[mproc::shared]
struct Counter(i64);

fn main() {}
