//! mproc: Python's `multiprocessing`, in Rust.
#![deny(missing_docs)]

pub use mproc_macros::process;
pub use mproc_runtime::*;
