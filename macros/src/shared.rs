//! `#[mproc::shared]`, parsing: the `impl` block and its proxied methods,
//! kept as syn nodes for spans. Validation is in `shared_validate.rs`,
//! expansion in `shared_expand.rs`.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::parse::Parser;
use syn::{FnArg, ImplItem, ImplItemFn, ItemImpl};

/// A parsed `#[mproc::shared]` invocation.
pub(crate) struct SharedImpl {
    /// `crate = path`: where the mproc runtime is (default `::mproc`).
    pub(crate) krate: Option<syn::Path>,
    /// Mistakes in the options.
    pub(crate) option_errors: Vec<syn::Error>,
    /// The block as written.
    pub(crate) item: ItemImpl,
}

impl SharedImpl {
    /// The methods with a receiver: the ones a proxy gets.
    pub(crate) fn methods(&self) -> impl Iterator<Item = &ImplItemFn> {
        self.item.items.iter().filter_map(|i| match i {
            ImplItem::Fn(f) if matches!(f.sig.inputs.first(), Some(FnArg::Receiver(_))) => Some(f),
            _ => None,
        })
    }
}

pub(crate) fn parse(attr: TokenStream, item: TokenStream) -> syn::Result<SharedImpl> {
    let item = match syn::parse2::<syn::Item>(item)? {
        syn::Item::Impl(i) => i,
        other => {
            return Err(syn::Error::new_spanned(
                head(&other),
                "#[mproc::shared] goes on an inherent `impl YourType { ... }` block: the \
                 methods with `&self` or `&mut self` become the proxy's methods",
            ));
        }
    };
    let mut krate = None;
    let mut option_errors = Vec::new();
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("crate") {
            krate = Some(meta.value()?.parse()?);
            Ok(())
        } else {
            let option = meta.path.to_token_stream().to_string().replace(' ', "");
            Err(meta.error(format!(
                "unknown option `{option}`; #[mproc::shared] takes no options"
            )))
        }
    });
    if let Err(e) = parser.parse2(attr) {
        option_errors.push(e);
    }
    Ok(SharedImpl {
        krate,
        option_errors,
        item,
    })
}

/// The keyword and name of an item, to point at instead of its whole body.
fn head(item: &syn::Item) -> TokenStream {
    match item {
        syn::Item::Struct(s) => {
            let (k, i) = (&s.struct_token, &s.ident);
            quote::quote!(#k #i)
        }
        syn::Item::Enum(e) => {
            let (k, i) = (&e.enum_token, &e.ident);
            quote::quote!(#k #i)
        }
        syn::Item::Fn(f) => {
            let (k, i) = (&f.sig.fn_token, &f.sig.ident);
            quote::quote!(#k #i)
        }
        syn::Item::Trait(t) => {
            let (k, i) = (&t.trait_token, &t.ident);
            quote::quote!(#k #i)
        }
        other => other.to_token_stream(),
    }
}
