#[mproc::child_init]
fn set_up(level: u8) {
    let _ = level;
}

fn main() {}
