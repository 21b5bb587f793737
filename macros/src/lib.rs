//! Procedural macros for [`mproc`](https://docs.rs/mproc). Use them through
//! `mproc`: `#[mproc::process]`.
//!
//! The pipeline is `parse` (a typed view that keeps the original syntax for
//! spans) → `validate` (every unsupported form becomes an error pointing at
//! it, with the fix in words) → `expand`.

#![deny(missing_docs)]

mod expand;
mod parse;
mod shared;
mod shared_expand;
mod shared_validate;
mod validate;

use proc_macro::TokenStream;

/// Turns a function (or an `impl mproc::Run for T` block) into a task that
/// can run in a child process. See the `mproc` crate's guide, section Tasks.
#[proc_macro_attribute]
pub fn process(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item2: proc_macro2::TokenStream = item.clone().into();
    match parse::parse(attr.into(), item.into()) {
        Ok(parsed) => {
            let errors = validate::validate(&parsed);
            expand::expand(&parsed, errors).into()
        }
        Err(e) => {
            let mut out = e.to_compile_error();
            out.extend(item2);
            out.into()
        }
    }
}

/// Shares a type through managers: on an inherent `impl` block, generates
/// the proxy type `<Type>Proxy` with each `&self`/`&mut self` method (its
/// result wrapped in `Result<_, mproc::ManagerError>`), `impl
/// mproc::Shared` and `impl mproc::Proxy`. See the `mproc` crate's guide,
/// section Managers.
#[proc_macro_attribute]
pub fn shared(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item2: proc_macro2::TokenStream = item.clone().into();
    match shared::parse(attr.into(), item.into()) {
        Ok(parsed) => {
            let errors = shared_validate::validate(&parsed);
            shared_expand::expand(&parsed, errors).into()
        }
        Err(e) => {
            let mut out = e.to_compile_error();
            out.extend(item2);
            out.into()
        }
    }
}
