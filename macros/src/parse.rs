//! Parsing: what the attribute was put on, kept as syn nodes for spans.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
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
    /// Mistakes in the options. They do not stop the expansion: the item is
    /// still a task (with the default for the bad option), so code using it
    /// compiles and the mistake is the only error.
    pub(crate) option_errors: Vec<syn::Error>,
    pub(crate) target: Target,
}

pub(crate) fn parse(attr: TokenStream, item: TokenStream) -> syn::Result<Parsed> {
    let target = match syn::parse2::<syn::Item>(item)? {
        syn::Item::Fn(f) => Target::Fn(f),
        syn::Item::Impl(i) => Target::Run(i),
        other => return Err(not_a_task(&other)),
    };
    let (options, option_errors) = parse_options(attr);
    Ok(Parsed {
        options,
        option_errors,
        target,
    })
}

fn parse_options(attr: TokenStream) -> (Options, Vec<syn::Error>) {
    let mut options = Options {
        name: None,
        krate: None,
    };
    let mut errors = Vec::new();
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("name") {
            let value: LitStr = meta.value()?.parse()?;
            if options.name.is_some() {
                errors.push(syn::Error::new_spanned(
                    &meta.path,
                    "`name` is given twice; keep one `name = \"...\"`",
                ));
            } else if value.value().trim().is_empty() {
                errors.push(syn::Error::new_spanned(
                    &value,
                    "a task name cannot be empty; write a unique name such as \"billing.invoice\", \
                     or remove `name = ...` to use the function's path",
                ));
            } else {
                options.name = Some(value);
            }
            Ok(())
        } else if meta.path.is_ident("crate") {
            options.krate = Some(meta.value()?.parse()?);
            Ok(())
        } else {
            let option = meta.path.to_token_stream().to_string().replace(' ', "");
            Err(meta.error(format!(
                "unknown option `{option}`; #[mproc::process] accepts only `name = \"...\"`"
            )))
        }
    });
    if let Err(e) = parser.parse2(attr) {
        errors.push(e);
    }
    (options, errors)
}

/// The error for an attribute on something that cannot be a task, pointing at
/// the item's keyword and name rather than its whole body.
fn not_a_task(item: &syn::Item) -> syn::Error {
    const WHERE: &str =
        "#[mproc::process] goes on a free function or on an `impl mproc::Run for YourType` block";
    let data_type = |keyword: &dyn ToTokens, ident: &syn::Ident| {
        syn::Error::new_spanned(
            quote!(#keyword #ident),
            format!(
                "{WHERE}, not on a type; to run `{ident}` in a child process, implement \
                 `mproc::Run` for it and put #[mproc::process] on that impl block"
            ),
        )
    };
    match item {
        syn::Item::Struct(s) => data_type(&s.struct_token, &s.ident),
        syn::Item::Enum(e) => data_type(&e.enum_token, &e.ident),
        syn::Item::Union(u) => data_type(&u.union_token, &u.ident),
        syn::Item::Trait(t) => {
            let (keyword, ident) = (&t.trait_token, &t.ident);
            syn::Error::new_spanned(quote!(#keyword #ident), WHERE)
        }
        other => syn::Error::new_spanned(other, WHERE),
    }
}
