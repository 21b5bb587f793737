#[derive(serde::Serialize, serde::Deserialize)]
struct Store(Vec<String>);

#[mproc::shared]
impl Store {
    fn push<T: ToString>(&mut self, item: T) {
        self.0.push(item.to_string());
    }
}

fn main() {}
