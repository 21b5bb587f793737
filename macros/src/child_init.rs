//! `#[mproc::child_init]`: parse, check and register a child set-up hook.
//!
//! A hook is a plain `fn name()`: the child calls it through a `fn()`
//! pointer before its task, so anything that would stop the function from
//! being one concrete `fn()` is refused here, at its span.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote};

use crate::register::registration;

/// Expands `#[mproc::child_init]` on `item`. The function is always emitted
/// as written; it is registered only when it is a valid hook, so one
/// mistake gives one error.
pub(crate) fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Vec::new();
    if !attr.is_empty() {
        errors.push(syn::Error::new_spanned(
            &attr,
            "#[mproc::child_init] takes no options; write it bare",
        ));
    }
    let f = match syn::parse2::<syn::ItemFn>(item.clone()) {
        Ok(f) => f,
        Err(_) => {
            let e = syn::Error::new(
                Span::call_site(),
                "#[mproc::child_init] goes on a function `fn name() { ... }`",
            );
            let mut out = e.to_compile_error();
            out.extend(item);
            return out;
        }
    };
    errors.extend(validate(&f.sig));
    let reg = if errors.is_empty() {
        let ident = &f.sig.ident;
        let stat = format_ident!("__MPROC_CHILD_INIT_{}", ident.to_string().to_uppercase());
        let krate = quote!(::mproc);
        registration(
            &krate,
            "CHILD_INITS",
            &stat,
            quote!(#krate::__private::ChildInit),
            quote!(#krate::__private::ChildInit {
                name: ::core::concat!(::core::module_path!(), "::", ::core::stringify!(#ident)),
                run: #ident,
            }),
        )
    } else {
        TokenStream::new()
    };
    let errors = errors.iter().map(syn::Error::to_compile_error);
    quote! {
        #(#errors)*
        #f
        #reg
    }
}

/// Every reason `sig` is not a plain `fn()`, each at its span.
fn validate(sig: &syn::Signature) -> Vec<syn::Error> {
    let mut errors = Vec::new();
    if let Some(a) = &sig.asyncness {
        errors.push(syn::Error::new_spanned(
            a,
            "a child_init hook cannot be `async`: the child calls it before its task, \
             with no executor; make it a plain `fn` (start a runtime inside if needed)",
        ));
    }
    if let Some(u) = &sig.unsafety {
        errors.push(syn::Error::new_spanned(
            u,
            "a child_init hook cannot be `unsafe fn`: nothing upholds its contract when the \
             child calls it; make it a safe `fn` and use `unsafe` blocks inside",
        ));
    }
    if let Some(abi) = &sig.abi {
        errors.push(syn::Error::new_spanned(
            abi,
            "a child_init hook cannot have an `extern` ABI; remove it",
        ));
    }
    let g = &sig.generics;
    if !g.params.is_empty() || g.where_clause.is_some() {
        let span: TokenStream = if g.params.is_empty() {
            let wc = &g.where_clause;
            quote!(#wc)
        } else {
            quote!(#g)
        };
        errors.push(syn::Error::new_spanned(
            span,
            "a child_init hook cannot be generic: the child calls one concrete function; \
             remove the generic parameters",
        ));
    }
    if !sig.inputs.is_empty() {
        let inputs = &sig.inputs;
        errors.push(syn::Error::new_spanned(
            inputs,
            "a child_init hook takes no arguments: the child calls it with nothing to pass; \
             read what it needs from the environment, a file, or a static instead",
        ));
    }
    if let syn::ReturnType::Type(_, ty) = &sig.output {
        errors.push(syn::Error::new_spanned(
            ty,
            "a child_init hook returns nothing: nobody receives its value; panic to fail \
             the child (the panic becomes the child's `ProcessError::Panicked`)",
        ));
    }
    if let Some(v) = &sig.variadic {
        errors.push(syn::Error::new_spanned(
            v,
            "a child_init hook cannot be variadic",
        ));
    }
    errors
}
