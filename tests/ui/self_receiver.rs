struct Counter {
    n: u32,
}

impl Counter {
    #[mproc::process]
    fn bump(self) -> u32 {
        self.n + 1
    }
}

fn main() {}
