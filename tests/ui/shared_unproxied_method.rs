#[derive(serde::Serialize, serde::Deserialize)]
struct Counter(i64);

#[mproc::shared]
impl Counter {
    fn starting_at(n: i64) -> Counter {
        Counter(n)
    }

    fn get(&self) -> i64 {
        self.0
    }
}

#[allow(dead_code)]
fn use_proxy(c: CounterProxy) {
    let _ = c.get();
    let _ = c.starting_at(3);
}

fn main() {}
