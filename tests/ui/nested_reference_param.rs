#[mproc::process]
fn join(words: Vec<&str>) -> String {
    words.join(" ")
}

fn main() {}
