#[derive(serde::Serialize, serde::Deserialize)]
struct Cell<T>(T);

#[mproc::shared]
impl<T: Clone> Cell<T> {
    fn get(&self) -> T {
        self.0.clone()
    }
}

fn main() {}
