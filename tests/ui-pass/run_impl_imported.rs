#![deny(warnings)]

use mproc::{Run, Task};

#[derive(serde::Serialize, serde::Deserialize)]
struct MyProc {
    greeting: String,
}

#[mproc::process(name = "greeter")]
impl Run for MyProc {
    type Output = String;
    fn run(self) -> String {
        format!("{} world", self.greeting)
    }
}

fn main() {
    let p = MyProc {
        greeting: "hello".to_string(),
    };
    assert_eq!(p.name(), "greeter");
    assert_eq!(p.call(()), "hello world");
}
