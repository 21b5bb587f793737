#[mproc::process]
fn greeting() -> &'static str {
    "hello"
}

fn main() {}
