struct Worker;

#[mproc::process]
impl std::fmt::Display for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("worker")
    }
}

fn main() {}
