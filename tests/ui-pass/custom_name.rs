#![deny(warnings)]

use mproc::Task;

#[mproc::process(name = "billing.invoice")]
fn invoice(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

#[mproc::process]
fn default_named() {}

fn main() {
    assert_eq!(invoice.name(), "billing.invoice");
    assert_eq!(invoice(1234), "12.34");
    assert_eq!(
        default_named.name(),
        concat!(module_path!(), "::default_named")
    );
    default_named();
}
