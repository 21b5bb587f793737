//! Validation: each form a task cannot take becomes one error at its span,
//! saying what to write instead.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::{FnArg, Pat, ReturnType, Type};

use crate::parse::{Parsed, Target};

pub(crate) fn validate(parsed: &Parsed) -> Vec<syn::Error> {
    match &parsed.target {
        Target::Fn(f) => validate_fn(f),
        Target::Run(i) => validate_run(i),
    }
}

/// A kind of type that cannot cross a process boundary.
#[derive(Clone, Copy)]
enum Unsupported {
    ImplTrait,
    Reference,
    RawPointer,
    TraitObject,
    FnPointer,
}

impl Unsupported {
    /// What goes wrong, and what to write instead, for a parameter.
    fn parameter_message(self) -> &'static str {
        match self {
            Self::ImplTrait => {
                "a task parameter cannot be `impl Trait`: arguments are sent to another \
                 process, so they need one concrete, serializable type; name the type"
            }
            Self::Reference => {
                "a task parameter cannot be a reference: arguments are copied into another \
                 process; take an owned type instead (`String` for `&str`, `Vec<T>` for `&[T]`)"
            }
            Self::RawPointer => {
                "a task parameter cannot be a raw pointer: an address means nothing in another \
                 process; pass the data itself, or share it with `mproc::Value`/`mproc::Array`"
            }
            Self::TraitObject => {
                "a task parameter cannot be a `dyn Trait`: arguments are sent to another \
                 process, so they need one concrete, serializable type; use an enum of the \
                 cases instead"
            }
            Self::FnPointer => {
                "a task parameter cannot be a function pointer: code addresses differ between \
                 processes; take a task instead (a `#[mproc::process]` function is a \
                 serializable value), or an enum naming the operation"
            }
        }
    }

    /// What goes wrong, and what to write instead, for the return type.
    fn return_message(self) -> &'static str {
        match self {
            Self::ImplTrait => {
                "a task cannot return `impl Trait`: the result is sent back to the parent, so it \
                 needs one concrete, serializable type; name the type (collect an iterator into \
                 a `Vec`)"
            }
            Self::Reference => {
                "a task cannot return a reference: the result is copied to the parent; return \
                 an owned type instead (`String` for `&str`, `Vec<T>` for `&[T]`)"
            }
            Self::RawPointer => {
                "a task cannot return a raw pointer: an address means nothing in the parent \
                 process; return the data itself"
            }
            Self::TraitObject => {
                "a task cannot return a `dyn Trait`: the result is sent back to the parent, so \
                 it needs one concrete, serializable type; return an enum of the cases instead"
            }
            Self::FnPointer => {
                "a task cannot return a function pointer: code addresses differ between \
                 processes; return a task (a `#[mproc::process]` function) or an enum instead"
            }
        }
    }
}

/// The first part of `ty` that cannot be sent to another process, if any:
/// the part itself, to point at, and its kind.
fn unsupported(ty: &Type) -> Option<(&Type, Unsupported)> {
    let kind = match ty {
        Type::ImplTrait(_) => Some(Unsupported::ImplTrait),
        Type::Reference(_) => Some(Unsupported::Reference),
        Type::Ptr(_) => Some(Unsupported::RawPointer),
        Type::TraitObject(_) => Some(Unsupported::TraitObject),
        Type::BareFn(_) => Some(Unsupported::FnPointer),
        _ => None,
    };
    if let Some(kind) = kind {
        return Some((ty, kind));
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

fn validate_fn(f: &syn::ItemFn) -> Vec<syn::Error> {
    let mut errors = Vec::new();
    let sig = &f.sig;
    if let Some(a) = &sig.asyncness {
        errors.push(syn::Error::new_spanned(
            a,
            "a task cannot be `async`: it runs in its own process; make it a plain `fn` \
             (start a runtime inside it if you need async code)",
        ));
    }
    if let Some(u) = &sig.unsafety {
        errors.push(syn::Error::new_spanned(
            u,
            "a task cannot be `unsafe fn`: the child calls it without any caller to uphold its \
             contract; make it a safe `fn` and use `unsafe` blocks inside",
        ));
    }
    if let Some(abi) = &sig.abi {
        errors.push(syn::Error::new_spanned(
            abi,
            "a task cannot have an `extern` ABI; remove it",
        ));
    }
    if let Some(generics) = generics_span(&sig.generics) {
        errors.push(syn::Error::new_spanned(
            generics,
            "a task cannot be generic: the child process finds the function by name, so it \
             must be one concrete function; write a non-generic wrapper that calls this one \
             with concrete types and put #[mproc::process] on the wrapper",
        ));
    }
    if let Some(v) = &sig.variadic {
        errors.push(syn::Error::new_spanned(v, "a task cannot be variadic"));
    }
    for arg in &sig.inputs {
        match arg {
            FnArg::Receiver(r) => errors.push(syn::Error::new_spanned(
                r,
                "a task cannot take `self`: #[mproc::process] goes on free functions; for a \
                 class-style target implement `mproc::Run` for your type and put \
                 #[mproc::process] on that impl block",
            )),
            FnArg::Typed(pt) => {
                match &*pt.pat {
                    Pat::Ident(pi) if pi.by_ref.is_none() && pi.subpat.is_none() => {}
                    other => errors.push(syn::Error::new_spanned(
                        other,
                        "task parameters must be plain names such as `x: i64`; bind the \
                         parameter to a name and destructure it inside the body",
                    )),
                }
                if let Some((part, kind)) = unsupported(&pt.ty) {
                    errors.push(syn::Error::new_spanned(part, kind.parameter_message()));
                }
            }
        }
    }
    if let ReturnType::Type(_, ty) = &sig.output {
        if let Some((part, kind)) = unsupported(ty) {
            errors.push(syn::Error::new_spanned(part, kind.return_message()));
        }
    }
    errors
}

/// The tokens to point at for generic parameters or a `where` clause, if any.
fn generics_span(generics: &syn::Generics) -> Option<TokenStream> {
    if !generics.params.is_empty() {
        Some(generics.to_token_stream())
    } else {
        generics
            .where_clause
            .as_ref()
            .map(ToTokens::to_token_stream)
    }
}

fn validate_run(i: &syn::ItemImpl) -> Vec<syn::Error> {
    let self_ty = &i.self_ty;
    let self_name = self_ty.to_token_stream().to_string().replace(' ', "");
    match &i.trait_ {
        None => {
            let impl_token = &i.impl_token;
            return vec![syn::Error::new_spanned(
                quote!(#impl_token #self_ty),
                format!(
                    "#[mproc::process] on an impl block needs the trait `mproc::Run`: write \
                     `impl mproc::Run for {self_name} {{ type Output = ...; fn run(self) -> \
                     Self::Output {{ ... }} }}` and put the attribute on that block; for a \
                     single function, put it on a free `fn` instead"
                ),
            )];
        }
        Some((_, path, _)) if path.segments.last().is_none_or(|s| s.ident != "Run") => {
            let trait_name = path.to_token_stream().to_string().replace(' ', "");
            return vec![syn::Error::new_spanned(
                path,
                format!(
                    "#[mproc::process] on an impl block needs the trait `mproc::Run`, not \
                     `{trait_name}`: implement `mproc::Run` for `{self_name}` and put the \
                     attribute on that block instead"
                ),
            )];
        }
        Some(_) => {}
    }
    let mut errors = Vec::new();
    if let Some(generics) = generics_span(&i.generics) {
        errors.push(syn::Error::new_spanned(
            generics,
            "a task type cannot be generic: the child process finds the type by name, so it \
             must be one concrete type; wrap a concrete instantiation in a non-generic \
             struct and implement `mproc::Run` for that",
        ));
        // `Echo<T>` below is the same mistake; say it once.
        return errors;
    }
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
                "a task type must be a plain type name such as `MyProc`, not `{self_name}`: \
                 the child process finds it by that name; define a struct (for example \
                 `struct MyProc(...);` holding the value) and implement `mproc::Run` for it"
            ),
        )),
    }
    errors
}
