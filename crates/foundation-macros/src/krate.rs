//! Finds the path under which the caller reaches `foundation-actors` (and
//! `foundation-cache`, for `#[cached]`).

use proc_macro_crate::{FoundCrate, crate_name};
use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::Ident;

/// `::foundation_actors` (possibly renamed), or `::foundation::actors` for applications
/// that depend on the facade only.
pub(crate) fn actors_path() -> TokenStream {
    match crate_name("foundation-actors") {
        // `foundation-actors` itself (its tests, benches and docs) declares
        // `extern crate self as foundation_actors`.
        Ok(FoundCrate::Itself) => quote!(::foundation_actors),
        Ok(FoundCrate::Name(name)) => {
            let name = Ident::new(&name, Span::call_site());
            quote!(::#name)
        }
        Err(_) => match crate_name("foundation") {
            Ok(FoundCrate::Name(name)) => {
                let name = Ident::new(&name, Span::call_site());
                quote!(::#name::actors)
            }
            Ok(FoundCrate::Itself) => quote!(crate::actors),
            Err(_) => quote!(::foundation_actors),
        },
    }
}

/// `::foundation` (possibly renamed): the facade, for macros only it offers.
pub(crate) fn facade_path() -> TokenStream {
    match crate_name("foundation") {
        Ok(FoundCrate::Name(name)) => {
            let name = Ident::new(&name, Span::call_site());
            quote!(::#name)
        }
        // The facade itself (its doc tests) declares `extern crate self as foundation`.
        Ok(FoundCrate::Itself) | Err(_) => quote!(::foundation),
    }
}

/// `::foundation_cache` (possibly renamed), or `::foundation::cache` for applications
/// that depend on the facade only.
pub(crate) fn cache_path() -> TokenStream {
    match crate_name("foundation-cache") {
        // `foundation-cache` itself (its tests and docs) declares
        // `extern crate self as foundation_cache`.
        Ok(FoundCrate::Itself) => quote!(::foundation_cache),
        Ok(FoundCrate::Name(name)) => {
            let name = Ident::new(&name, Span::call_site());
            quote!(::#name)
        }
        Err(_) => match crate_name("foundation") {
            Ok(FoundCrate::Name(name)) => {
                let name = Ident::new(&name, Span::call_site());
                quote!(::#name::cache)
            }
            Ok(FoundCrate::Itself) => quote!(crate::cache),
            Err(_) => quote!(::foundation_cache),
        },
    }
}

/// `::foundation_registry` (possibly renamed), or `::foundation::registry` for
/// applications that depend on the facade only: for `#[actor(handoff)]`, whose generated
/// code implements the registry's `Handoff`. Only that option asks for it, so an actor
/// without it compiles with `foundation-actors` alone.
pub(crate) fn registry_path() -> TokenStream {
    match crate_name("foundation-registry") {
        // `foundation-registry`'s own tests and doc tests link it as an extern crate.
        Ok(FoundCrate::Itself) => quote!(::foundation_registry),
        Ok(FoundCrate::Name(name)) => {
            let name = Ident::new(&name, Span::call_site());
            quote!(::#name)
        }
        Err(_) => match crate_name("foundation") {
            Ok(FoundCrate::Name(name)) => {
                let name = Ident::new(&name, Span::call_site());
                quote!(::#name::registry)
            }
            Ok(FoundCrate::Itself) => quote!(crate::registry),
            Err(_) => quote!(::foundation_registry),
        },
    }
}
