//! The one way an expansion adds an entry to a link-time registry.

use proc_macro2::{Ident, TokenStream};
use quote::quote;

/// Registers `value` (of type `ty`) in the runtime's registry `registry`
/// (`TASKS`, `SHARED_TYPES`) under the static name `stat`.
///
/// On Unix that is a `linkme` distributed slice. On Windows it is a static
/// node pushed onto the registry by a `.CRT$XCU` initializer before `main`
/// (see the runtime's `sys/registry.rs` for why): the `cfg`s are evaluated
/// for the user's target, where the expansion is compiled.
pub(crate) fn registration(
    krate: &TokenStream,
    registry: &str,
    stat: &Ident,
    ty: TokenStream,
    value: TokenStream,
) -> TokenStream {
    let registry = Ident::new(registry, proc_macro2::Span::call_site());
    let linkme_path = quote!(#krate::__private::linkme).to_string();
    let linkme_path: syn::Path = syn::parse_str(&linkme_path).expect("a valid path");
    quote! {
        #[cfg(not(windows))]
        #[#krate::__private::linkme::distributed_slice(#krate::__private::#registry)]
        #[linkme(crate = #linkme_path)]
        #[doc(hidden)]
        static #stat: #ty = #value;

        #[cfg(windows)]
        #[doc(hidden)]
        const _: () = {
            static NODE: #krate::__private::Node<#ty> = #krate::__private::Node::new(#value);
            extern "C" fn register() {
                #krate::__private::#registry.push(&NODE);
            }
            #[used]
            #[unsafe(link_section = ".CRT$XCU")]
            static REGISTER: extern "C" fn() = register;
        };
    }
}
