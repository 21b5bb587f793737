#[mproc::process]
fn add(x: i64, y: i64) -> i64 {
    x + y
}

#[test]
fn smoke() {
    assert_eq!(add(1, 2), 3);
    // Windows has only Spawn.
    let all = mproc::get_all_start_methods();
    for m in [
        mproc::StartMethod::Spawn,
        mproc::StartMethod::Fork,
        mproc::StartMethod::ForkServer,
    ]
    .into_iter()
    .filter(|m| all.contains(m))
    {
        let p = mproc::Process::new(add, (1, 2))
            .start_method(m)
            .start()
            .unwrap();
        assert_eq!(p.join().unwrap(), 3, "{m:?}");
    }
}
