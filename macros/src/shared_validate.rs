//! `#[mproc::shared]`, validation: each form a proxied method cannot take
//! becomes one error at its span, saying what to write instead.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::{FnArg, Pat, ReturnType, Type};

use crate::shared::SharedImpl;

pub(crate) fn validate(s: &SharedImpl) -> Vec<syn::Error> {
    let i = &s.item;
    let self_ty = &i.self_ty;
    let self_name = self_ty.to_token_stream().to_string().replace(' ', "");
    if let Some((_, path, _)) = &i.trait_ {
        return vec![syn::Error::new_spanned(
            path,
            format!(
                "#[mproc::shared] goes on an inherent impl block (`impl {self_name} {{ ... }}`), \
                 not on a trait impl: write the methods the proxy should have in an inherent \
                 block and put the attribute there"
            ),
        )];
    }
    if let Some(g) = generics(&i.generics) {
        return vec![syn::Error::new_spanned(
            g,
            "a shared type cannot be generic: the manager's server finds the type by name, so \
             it must be one concrete type; wrap a concrete instantiation in a non-generic \
             struct and share that",
        )];
    }
    let mut errors = Vec::new();
    match &**self_ty {
        Type::Path(p)
            if p.qself.is_none()
                && p.path
                    .segments
                    .last()
                    .is_some_and(|s| s.arguments.is_empty()) => {}
        other => errors.push(syn::Error::new_spanned(
            other,
            format!(
                "a shared type must be a plain type name such as `Counter`, not `{self_name}`: \
                 the manager's server finds it by that name"
            ),
        )),
    }
    if let Some(u) = &i.unsafety {
        errors.push(syn::Error::new_spanned(
            u,
            "remove `unsafe` from the impl block",
        ));
    }
    for m in s.methods() {
        validate_method(m, &mut errors);
    }
    errors
}

fn generics(g: &syn::Generics) -> Option<TokenStream> {
    if !g.params.is_empty() {
        Some(g.to_token_stream())
    } else {
        g.where_clause.as_ref().map(ToTokens::to_token_stream)
    }
}

fn validate_method(m: &syn::ImplItemFn, errors: &mut Vec<syn::Error>) {
    let sig = &m.sig;
    let name = &sig.ident;
    if let Some(a) = &sig.asyncness {
        errors.push(syn::Error::new_spanned(
            a,
            format!(
                "a shared method cannot be `async`: the manager's server calls `{name}` from a \
                 plain thread; make it a plain `fn`"
            ),
        ));
    }
    if let Some(u) = &sig.unsafety {
        errors.push(syn::Error::new_spanned(
            u,
            "a shared method cannot be `unsafe fn`: a proxy call has no caller to uphold its \
             contract; make it safe and use `unsafe` blocks inside",
        ));
    }
    if let Some(g) = generics(&sig.generics) {
        errors.push(syn::Error::new_spanned(
            g,
            format!(
                "a shared method cannot be generic: the server must know the concrete types to \
                 decode the arguments of `{name}`; write one method per concrete type"
            ),
        ));
    }
    for arg in &sig.inputs {
        match arg {
            FnArg::Receiver(r) => {
                if r.reference.is_none() || r.colon_token.is_some() {
                    let fix = if r.mutability.is_some() {
                        "&mut self"
                    } else {
                        "&self"
                    };
                    errors.push(syn::Error::new_spanned(
                        r,
                        format!(
                            "a shared method cannot take `self` by value (or as a typed \
                             receiver): the object stays in the manager's server; take `{fix}` \
                             instead, or move this method to another impl block"
                        ),
                    ));
                }
            }
            FnArg::Typed(pt) => {
                match &*pt.pat {
                    Pat::Ident(pi) if pi.by_ref.is_none() && pi.subpat.is_none() => {}
                    other => errors.push(syn::Error::new_spanned(
                        other,
                        "shared method parameters must be plain names such as `x: i64`; bind \
                         the parameter to a name and destructure it inside the body",
                    )),
                }
                if let Some((part, what)) = unsupported(&pt.ty) {
                    errors.push(syn::Error::new_spanned(
                        part,
                        format!(
                            "a shared method parameter cannot be {what}: arguments are encoded and \
                             sent to the manager's server; take an owned, serializable type \
                             instead (`String` for `&str`, `Vec<T>` for `&[T]`)"
                        ),
                    ));
                }
            }
        }
    }
    if let ReturnType::Type(_, ty) = &sig.output {
        if let Some((part, what)) = unsupported(ty) {
            errors.push(syn::Error::new_spanned(
                part,
                format!(
                    "a shared method cannot return {what}: the result is encoded and sent back to \
                     the caller's process; return an owned, serializable type (clone the data, \
                     collect an iterator into a `Vec`)"
                ),
            ));
        }
    }
}

/// The first part of `ty` that cannot be encoded, and what it is.
fn unsupported(ty: &Type) -> Option<(&Type, &'static str)> {
    let what = match ty {
        Type::ImplTrait(_) => Some("`impl Trait`"),
        Type::Reference(_) => Some("a reference"),
        Type::Ptr(_) => Some("a raw pointer"),
        Type::TraitObject(_) => Some("a `dyn Trait`"),
        Type::BareFn(_) => Some("a function pointer"),
        _ => None,
    };
    if let Some(w) = what {
        return Some((ty, w));
    }
    match ty {
        Type::Paren(p) => unsupported(&p.elem),
        Type::Group(g) => unsupported(&g.elem),
        Type::Tuple(t) => t.elems.iter().find_map(unsupported),
        Type::Array(a) => unsupported(&a.elem),
        Type::Slice(s) => unsupported(&s.elem),
        Type::Path(p) => p
            .path
            .segments
            .iter()
            .filter_map(|s| match &s.arguments {
                syn::PathArguments::AngleBracketed(a) => Some(a),
                _ => None,
            })
            .flat_map(|a| &a.args)
            .find_map(|arg| match arg {
                syn::GenericArgument::Type(t) => unsupported(t),
                _ => None,
            }),
        _ => None,
    }
}
