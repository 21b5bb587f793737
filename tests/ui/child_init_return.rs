#[mproc::child_init]
fn set_up() -> bool {
    true
}

fn main() {}
