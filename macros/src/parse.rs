//! Parsing: what the attribute was put on, kept as syn nodes for spans.

use proc_macro2::TokenStream;
use syn::parse::Parser;
use syn::{ItemFn, ItemImpl, LitStr};

/// The options inside `#[mproc::process(...)]`.
pub(crate) struct Options {
    /// `name = "..."`: the registered name.
    pub(crate) name: Option<LitStr>,
    /// `crate = path`: where the mproc runtime is (default `::mproc`).
    pub(crate) krate: Option<syn::Path>,
}

/// What the attribute is on.
pub(crate) enum Target {
    /// A free function.
    Fn(ItemFn),
    /// An `impl Run for T` block.
    Run(ItemImpl),
}

/// A parsed attribute invocation.
pub(crate) struct Parsed {
    pub(crate) options: Options,
    pub(crate) target: Target,
}

pub(crate) fn parse(attr: TokenStream, item: TokenStream) -> syn::Result<Parsed> {
    let mut options = Options {
        name: None,
        krate: None,
    };
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("name") {
            let value: LitStr = meta.value()?.parse()?;
            if value.value().is_empty() {
                return Err(syn::Error::new_spanned(
                    &value,
                    "a task name cannot be empty; write a unique name such as \"billing.invoice\"",
                ));
            }
            options.name = Some(value);
            Ok(())
        } else if meta.path.is_ident("crate") {
            options.krate = Some(meta.value()?.parse()?);
            Ok(())
        } else {
            Err(meta.error(
                "unknown option; #[mproc::process] accepts only `name = \"...\"`",
            ))
        }
    });
    parser.parse2(attr)?;
    let target = match syn::parse2::<syn::Item>(item)? {
        syn::Item::Fn(f) => Target::Fn(f),
        syn::Item::Impl(i) => Target::Run(i),
        other => {
            return Err(syn::Error::new_spanned(
                other,
                "#[mproc::process] goes on a free function or on an `impl mproc::Run for YourType` block",
            ));
        }
    };
    Ok(Parsed { options, target })
}
