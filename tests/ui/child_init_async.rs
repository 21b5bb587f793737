#[mproc::child_init]
async fn set_up() {}

fn main() {}
