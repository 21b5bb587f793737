#[derive(serde::Serialize, serde::Deserialize)]
struct Names(Vec<String>);

#[mproc::shared]
impl Names {
    fn add(&mut self, name: &str) {
        self.0.push(name.to_string());
    }
}

fn main() {}
