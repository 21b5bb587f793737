#[derive(serde::Serialize, serde::Deserialize)]
struct Counter(i64);

#[mproc::shared]
impl Counter {
    fn into_inner(self) -> i64 {
        self.0
    }
}

fn main() {}
