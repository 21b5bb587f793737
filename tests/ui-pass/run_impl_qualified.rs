#![deny(warnings)]

use mproc::Task;

#[derive(serde::Serialize, serde::Deserialize)]
struct MyProc {
    n: u32,
}

#[mproc::process]
impl mproc::Run for MyProc {
    type Output = u32;
    fn run(self) -> u32 {
        self.n * 2
    }
}

fn main() {
    let p = MyProc { n: 5 };
    assert_eq!(p.name(), concat!(module_path!(), "::MyProc"));
    assert_eq!(p.call(()), 10);
    // `Process::new(MyProc { .. }, ())` type-checks without starting anything.
    let _builder = mproc::Process::new(MyProc { n: 1 }, ());
}
