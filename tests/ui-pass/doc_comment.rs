//! A documented task keeps its docs and passes `missing_docs`.
#![deny(warnings, missing_docs)]

/// Tasks that can run in a child process.
pub mod tasks {
    /// Adds two numbers.
    ///
    /// ```
    /// assert_eq!(1 + 2, 3);
    /// ```
    #[mproc::process]
    pub fn add(x: i64, y: i64) -> i64 {
        x + y
    }
}

fn main() {
    assert_eq!(tasks::add(1, 2), 3);
}
