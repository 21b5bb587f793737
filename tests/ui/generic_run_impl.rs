use mproc::Run;

#[derive(serde::Serialize, serde::Deserialize)]
struct Echo<T> {
    value: T,
}

#[mproc::process]
impl<T> Run for Echo<T> {
    type Output = T;
    fn run(self) -> T {
        self.value
    }
}

fn main() {}
