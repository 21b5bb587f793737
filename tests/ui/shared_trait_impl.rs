#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Counter(i64);

#[mproc::shared]
impl Clone for Counter {
    fn clone(&self) -> Self {
        Counter(self.0)
    }
}

fn main() {}
