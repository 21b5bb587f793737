#[mproc::process(name = "")]
fn tick() -> u32 {
    7
}

fn main() {}
