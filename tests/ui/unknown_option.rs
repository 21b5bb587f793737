#[mproc::process(timeout = 5)]
fn tick() -> u32 {
    7
}

fn main() {}
