#[derive(serde::Serialize, serde::Deserialize)]
struct Worker {
    id: u32,
}

#[mproc::process]
impl Worker {
    fn run(self) -> u32 {
        self.id
    }
}

fn main() {}
