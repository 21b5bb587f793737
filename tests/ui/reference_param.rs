#[mproc::process]
fn shout(name: &str) -> String {
    name.to_uppercase()
}

fn main() {}
