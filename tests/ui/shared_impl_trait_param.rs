#[derive(serde::Serialize, serde::Deserialize)]
struct Names(Vec<String>);

#[mproc::shared]
impl Names {
    fn add(&mut self, name: impl Into<String>) {
        self.0.push(name.into());
    }
}

fn main() {}
