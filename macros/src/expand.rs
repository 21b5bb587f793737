//! Expansion: the task type, the constant that names it, the real function,
//! the `Task` impl and the registry entry.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, Pat, ReturnType};

use crate::parse::{Options, Parsed, Target};

pub(crate) fn expand(parsed: &Parsed, errors: Vec<syn::Error>) -> TokenStream {
    let mut out: TokenStream = parsed
        .option_errors
        .iter()
        .chain(&errors)
        .map(syn::Error::to_compile_error)
        .collect();
    if !errors.is_empty() {
        // The item cannot be a task: keep it as the user wrote it, so that
        // its own mistake is the only error (rather than a cascade from a
        // half-made task).
        match &parsed.target {
            Target::Fn(f) => out.extend(quote!(#f)),
            Target::Run(i) => out.extend(quote!(#i)),
        }
        return out;
    }
    // Option mistakes do not touch the item: it still becomes a task, so
    // code that uses it keeps compiling and the bad option is the one error.
    out.extend(match &parsed.target {
        Target::Fn(f) => expand_fn(&parsed.options, f),
        Target::Run(i) => expand_run(&parsed.options, i),
    });
    out
}

fn krate(options: &Options) -> TokenStream {
    match &options.krate {
        Some(path) => quote!(#path),
        None => quote!(::mproc),
    }
}

fn registered_name(options: &Options, ident: &syn::Ident) -> TokenStream {
    match &options.name {
        Some(lit) => quote!(#lit),
        None => {
            let s = ident.to_string();
            quote!(::core::concat!(::core::module_path!(), "::", #s))
        }
    }
}

fn registration(krate: &TokenStream, ty: &syn::Ident, name: &TokenStream) -> TokenStream {
    let stat = format_ident!("__MPROC_REGISTER_{}", ty.to_string().to_uppercase());
    crate::register::registration(
        krate,
        "TASKS",
        &stat,
        quote!(#krate::__private::TaskEntry),
        quote!(#krate::__private::TaskEntry {
            name: #name,
            fingerprint: #krate::__private::fingerprint::<#ty>,
            run: #krate::__private::run_erased::<#ty>,
            run_chunk: #krate::__private::run_chunk_erased::<#ty>,
        }),
    )
}

fn expand_fn(options: &Options, f: &syn::ItemFn) -> TokenStream {
    let krate = krate(options);
    let vis = &f.vis;
    let ident = &f.sig.ident;
    let ty = format_ident!("__mproc_task_{}", ident);
    let real = format_ident!("__mproc_fn_{}", ident);
    let docs: Vec<&syn::Attribute> = f
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .collect();
    let other_attrs: Vec<&syn::Attribute> = f
        .attrs
        .iter()
        .filter(|a| !a.path().is_ident("doc"))
        .collect();
    let mut real_sig = f.sig.clone();
    real_sig.ident = real.clone();
    let block = &f.block;

    let types: Vec<&syn::Type> = f
        .sig
        .inputs
        .iter()
        .filter_map(|a| match a {
            FnArg::Typed(pt) => Some(&*pt.ty),
            FnArg::Receiver(_) => None,
        })
        .collect();
    let names: Vec<syn::Ident> = f
        .sig
        .inputs
        .iter()
        .enumerate()
        .map(|(i, a)| match a {
            FnArg::Typed(pt) => match &*pt.pat {
                Pat::Ident(pi) => {
                    syn::Ident::new(&format!("__arg_{}", pi.ident), Span::mixed_site())
                }
                _ => format_ident!("__arg{}", i),
            },
            FnArg::Receiver(_) => format_ident!("__self"),
        })
        .collect();
    let args_ty = match types.len() {
        1 => {
            let t = types[0];
            quote!(#t)
        }
        _ => quote!((#(#types,)*)),
    };
    let args_pat = match names.len() {
        1 => {
            let n = &names[0];
            quote!(#n)
        }
        _ => quote!((#(#names,)*)),
    };
    let output = match &f.sig.output {
        ReturnType::Default => quote!(()),
        ReturnType::Type(_, t) => quote!(#t),
    };
    let name = registered_name(options, ident);
    let reg = registration(&krate, &ty, &name);
    let serde_path = quote!(#krate::__private::serde).to_string();
    // Spanned at the function's name, so that rustc's "constant defined here"
    // (for `let add = 1;` in the same module) points at `fn add`.
    let constant = quote_spanned! {ident.span()=>
        #(#docs)*
        #[allow(non_upper_case_globals)]
        #vis const #ident: #ty = #ty;
    };

    quote! {
        #[doc(hidden)]
        #[allow(non_camel_case_types)]
        #[derive(
            ::core::clone::Clone, ::core::marker::Copy, ::core::fmt::Debug, ::core::default::Default,
            #krate::__private::serde::Serialize, #krate::__private::serde::Deserialize,
        )]
        #[serde(crate = #serde_path)]
        #vis struct #ty;

        #constant

        #[doc(hidden)]
        #(#other_attrs)*
        #vis #real_sig #block

        impl ::core::ops::Deref for #ty {
            type Target = fn(#(#types),*) -> #output;
            fn deref(&self) -> &Self::Target {
                const F: fn(#(#types),*) -> #output = #real;
                &F
            }
        }

        impl #krate::Task for #ty {
            type Args = #args_ty;
            type Output = #output;
            fn name(&self) -> &'static str {
                #name
            }
            fn call(self, #args_pat: Self::Args) -> Self::Output {
                #real(#(#names),*)
            }
        }

        #reg
    }
}

fn expand_run(options: &Options, i: &syn::ItemImpl) -> TokenStream {
    let krate = krate(options);
    let self_ty = &i.self_ty;
    let ident = match &**self_ty {
        syn::Type::Path(p) => p.path.segments.last().expect("validated").ident.clone(),
        _ => unreachable!("validated: a plain type name"),
    };
    let name = registered_name(options, &ident);
    let reg = registration(&krate, &ident, &name);
    // Spanned at the type, so that a type that is not `Serialize +
    // DeserializeOwned + Send + Sync + 'static` is reported there.
    // Likewise an `Output` that cannot be sent back is reported at the
    // user's `type Output = ...`.
    let output_span = i
        .items
        .iter()
        .find_map(|item| match item {
            syn::ImplItem::Type(t) if t.ident == "Output" => Some(t.ty.span()),
            _ => None,
        })
        .unwrap_or_else(|| self_ty.span());
    let output = quote_spanned! {output_span=>
        type Output = <#self_ty as #krate::Run>::Output;
    };
    let task_impl = quote_spanned! {self_ty.span()=>
        impl #krate::Task for #self_ty {
            type Args = ();
            #output
            fn name(&self) -> &'static str {
                #name
            }
            fn call(self, _args: ()) -> Self::Output {
                <#self_ty as #krate::Run>::run(self)
            }
        }
    };
    quote! {
        #i

        #task_impl

        #reg
    }
}
