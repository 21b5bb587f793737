#[mproc::child_init]
fn set_up<T: Default>() {
    let _ = T::default();
}

fn main() {}
