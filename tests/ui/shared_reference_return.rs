#[derive(serde::Serialize, serde::Deserialize)]
struct Names(Vec<String>);

#[mproc::shared]
impl Names {
    fn first(&self) -> Option<&String> {
        self.0.first()
    }
}

fn main() {}
