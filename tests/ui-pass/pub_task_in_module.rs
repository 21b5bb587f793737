#![deny(warnings)]

mod math {
    #[mproc::process]
    pub fn add(x: i64, y: i64) -> i64 {
        x + y
    }

    pub(crate) mod nested {
        #[mproc::process]
        pub(crate) fn square(x: i64) -> i64 {
            x * x
        }
    }
}

use math::add;
use mproc::Task;

fn name_of<T: Task>(task: T) -> &'static str {
    task.name()
}

fn main() {
    assert_eq!(add(1, 2), 3);
    assert_eq!(math::nested::square(4), 16);
    assert_eq!(name_of(add), concat!(module_path!(), "::math::add"));
    assert_eq!(
        name_of(math::nested::square),
        concat!(module_path!(), "::math::nested::square")
    );
    let _builder = mproc::Process::new(math::add, (1, 2));
}
