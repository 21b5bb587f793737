//! Validation: each form a task cannot take becomes one error at its span,
//! saying what to write instead.

use syn::{FnArg, Pat, ReturnType, Type};

use crate::parse::{Parsed, Target};

pub(crate) fn validate(parsed: &Parsed) -> Vec<syn::Error> {
    match &parsed.target {
        Target::Fn(f) => validate_fn(f),
        Target::Run(i) => validate_run(i),
    }
}

fn contains_impl_trait(ty: &Type) -> bool {
    match ty {
        Type::ImplTrait(_) => true,
        Type::Paren(p) => contains_impl_trait(&p.elem),
        Type::Group(g) => contains_impl_trait(&g.elem),
        Type::Tuple(t) => t.elems.iter().any(contains_impl_trait),
        Type::Array(a) => contains_impl_trait(&a.elem),
        Type::Slice(s) => contains_impl_trait(&s.elem),
        Type::Path(p) => p.path.segments.iter().any(|s| match &s.arguments {
            syn::PathArguments::AngleBracketed(a) => a.args.iter().any(|arg| match arg {
                syn::GenericArgument::Type(t) => contains_impl_trait(t),
                _ => false,
            }),
            _ => false,
        }),
        _ => false,
    }
}

fn contains_reference(ty: &Type) -> bool {
    match ty {
        Type::Reference(_) => true,
        Type::Paren(p) => contains_reference(&p.elem),
        Type::Group(g) => contains_reference(&g.elem),
        Type::Tuple(t) => t.elems.iter().any(contains_reference),
        Type::Array(a) => contains_reference(&a.elem),
        Type::Path(p) => p.path.segments.iter().any(|s| match &s.arguments {
            syn::PathArguments::AngleBracketed(a) => a.args.iter().any(|arg| match arg {
                syn::GenericArgument::Type(t) => contains_reference(t),
                _ => false,
            }),
            _ => false,
        }),
        _ => false,
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
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.push(syn::Error::new_spanned(
            &sig.generics,
            "a task cannot be generic: the child must find one concrete function by name; \
             write a non-generic wrapper and put #[mproc::process] on it",
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
                if contains_impl_trait(&pt.ty) {
                    errors.push(syn::Error::new_spanned(
                        &pt.ty,
                        "a task parameter cannot be `impl Trait`: arguments are sent to \
                         another process, so they need one concrete, serializable type",
                    ));
                } else if contains_reference(&pt.ty) {
                    errors.push(syn::Error::new_spanned(
                        &pt.ty,
                        "a task parameter cannot be a reference: arguments are copied into \
                         another process; take an owned type instead (`String` for `&str`, \
                         `Vec<T>` for `&[T]`)",
                    ));
                }
            }
        }
    }
    if let ReturnType::Type(_, ty) = &sig.output {
        if contains_impl_trait(ty) {
            errors.push(syn::Error::new_spanned(
                ty,
                "a task cannot return `impl Trait`: the result is sent back to the parent, so \
                 it needs one concrete, serializable type",
            ));
        } else if contains_reference(ty) {
            errors.push(syn::Error::new_spanned(
                ty,
                "a task cannot return a reference: the result is copied to the parent; return \
                 an owned type instead",
            ));
        }
    }
    errors
}

fn validate_run(i: &syn::ItemImpl) -> Vec<syn::Error> {
    let mut errors = Vec::new();
    let is_run = i
        .trait_
        .as_ref()
        .and_then(|(_, path, _)| path.segments.last())
        .is_some_and(|s| s.ident == "Run");
    if !is_run {
        errors.push(syn::Error::new_spanned(
            &i.self_ty,
            "on an impl block, #[mproc::process] needs `impl mproc::Run for YourType`; for an \
             inherent method write a free function instead",
        ));
    }
    if !i.generics.params.is_empty() {
        errors.push(syn::Error::new_spanned(
            &i.generics,
            "a task type cannot be generic: the child must find one concrete type by name",
        ));
    }
    match &*i.self_ty {
        Type::Path(p) if p.qself.is_none() && p.path.segments.last().is_some_and(|s| s.arguments.is_empty()) => {}
        other => errors.push(syn::Error::new_spanned(
            other,
            "#[mproc::process] needs a plain type name here, such as `impl mproc::Run for MyProc`",
        )),
    }
    errors
}
