//! Procedural macros for [`mproc`](https://docs.rs/mproc). Use them through
//! `mproc`: `#[mproc::process]`.
//!
//! The pipeline is `parse` (a typed view that keeps the original syntax for
//! spans) → `validate` (every unsupported form becomes an error pointing at
//! it, with the fix in words) → `expand`.

#![deny(missing_docs)]

mod child_init;
mod expand;
mod parse;
mod register;
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

/// Shares a type through managers: put it on the type's inherent `impl`
/// block.
///
/// ```ignore
/// #[derive(Default, serde::Serialize, serde::Deserialize)]
/// struct Counter { n: i64 }
///
/// #[mproc::shared]
/// impl Counter {
///     pub fn add(&mut self, by: i64) -> i64 { self.n += by; self.n }
///     pub fn checked_sub(&mut self, by: i64) -> Result<i64, String> { /* ... */ }
/// }
///
/// let m = mproc::Manager::start()?;
/// let c: CounterProxy = m.share(Counter::default())?;   // or BaseManager::register
/// c.add(2)?;                       // Result<i64, mproc::ManagerError>
/// c.checked_sub(5)?;               // Result<Result<i64, String>, ManagerError>
/// ```
///
/// It generates, next to the block as written:
/// * `pub struct CounterProxy` (`Clone + Debug + Serialize + Deserialize`)
///   with one method per `&self`/`&mut self` method, same name, parameters
///   and visibility, returning `Result<R, mproc::ManagerError>` (a method
///   returning `Result<R, E>` gives `Result<Result<R, E>, ManagerError>`:
///   the object's own error comes back as itself);
/// * `impl mproc::Shared for Counter` (its server-side dispatch) and
///   `impl mproc::Proxy for CounterProxy`;
/// * an entry in a link-time registry, so that a manager's server process
///   (the same binary) can revive a `Counter` sent to it.
///
/// Only those methods can be called through the proxy; functions without a
/// receiver (constructors) are left out. Calls on one object run one at a
/// time (the object sits behind a mutex in the server); a method that
/// panics is a `ManagerError::Remote` for that call and the object stays.
/// The type must be `Serialize + DeserializeOwned + Send + 'static`, and a
/// type has one `#[mproc::shared]` block. Compile errors, each at its span
/// with the fix in words: `self` by value, generic or `async` or `unsafe`
/// methods, reference, `impl Trait`, `dyn`, pointer or function-pointer
/// parameters and results, destructuring parameters, generic types, trait
/// impls.
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

/// Registers a function that runs once in every child process before its
/// task: put it on a plain `fn name() { ... }` (no arguments, no return
/// type, not `async`, not generic). See the `mproc` crate's guide, section
/// "Child set-up".
#[proc_macro_attribute]
pub fn child_init(attr: TokenStream, item: TokenStream) -> TokenStream {
    child_init::expand(attr.into(), item.into()).into()
}
