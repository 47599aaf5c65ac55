//! `#[cached]`: cache-aside on an async function, through `foundation_cache::cached`.

use proc_macro2::TokenStream;
use quote::quote;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, FnArg, Ident, ItemFn, Pat, ReturnType, Token};

/// The attribute's arguments: `cache = expr` (required), `key = expr`, `ttl = expr`.
struct Args {
    cache: Option<Expr>,
    key: Option<Expr>,
    ttl: Option<Expr>,
}

impl Parse for Args {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut args = Args {
            cache: None,
            key: None,
            ttl: None,
        };
        let pairs = Punctuated::<syn::MetaNameValue, Token![,]>::parse_terminated(input)?;
        for pair in pairs {
            let name = pair
                .path
                .get_ident()
                .map(Ident::to_string)
                .unwrap_or_default();
            let slot = match name.as_str() {
                "cache" => &mut args.cache,
                "key" => &mut args.key,
                "ttl" => &mut args.ttl,
                _ => {
                    return Err(syn::Error::new(
                        pair.path.span(),
                        "unknown argument: #[cached] takes `cache = …`, `key = …` and `ttl = …`",
                    ));
                }
            };
            if slot.is_some() {
                return Err(syn::Error::new(
                    pair.path.span(),
                    format!("`{name}` is given twice"),
                ));
            }
            *slot = Some(pair.value);
        }
        Ok(args)
    }
}

pub(crate) fn expand(attr: TokenStream, item: ItemFn) -> TokenStream {
    match try_expand(attr, item) {
        Ok(tokens) => tokens,
        Err(e) => e.to_compile_error(),
    }
}

fn try_expand(attr: TokenStream, item: ItemFn) -> syn::Result<TokenStream> {
    let args: Args = syn::parse2(attr)?;
    let cache = args.cache.ok_or_else(|| {
        syn::Error::new(
            item.sig.ident.span(),
            "#[cached] needs `cache = <expression>`: the cache to read and write",
        )
    })?;
    if item.sig.asyncness.is_none() {
        return Err(syn::Error::new(
            item.sig.fn_token.span(),
            "#[cached] is for `async fn`s",
        ));
    }
    let ret = match &item.sig.output {
        ReturnType::Type(_, ty) => ty.clone(),
        ReturnType::Default => {
            return Err(syn::Error::new(
                item.sig.ident.span(),
                "a #[cached] function returns `Result<V, E>`: the value to cache, or why there is none",
            ));
        }
    };
    // The key: as given, else the arguments (one: itself; several: a tuple of them).
    let key = match args.key {
        Some(key) => quote!(#key),
        None => {
            let mut names = Vec::new();
            for input in &item.sig.inputs {
                match input {
                    FnArg::Receiver(_) => {}
                    FnArg::Typed(pat) => match &*pat.pat {
                        Pat::Ident(id) => names.push(id.ident.clone()),
                        other => {
                            return Err(syn::Error::new(
                                other.span(),
                                "#[cached] without `key = …` makes the key of the arguments, which must then be plain names",
                            ));
                        }
                    },
                }
            }
            match names.as_slice() {
                [] => {
                    return Err(syn::Error::new(
                        item.sig.ident.span(),
                        "a #[cached] function without arguments needs `key = …`",
                    ));
                }
                [one] => quote!(#one),
                // Each cloned: the body still owns its arguments.
                many => quote!((#(::core::clone::Clone::clone(&#many)),*)),
            }
        }
    };
    let krate = crate::krate::cache_path();
    let ttl = match args.ttl {
        Some(ttl) => quote!(::core::convert::Into::<#krate::Ttl>::into(#ttl)),
        None => quote!(#krate::Ttl::Default),
    };
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = item;
    Ok(quote! {
        #(#attrs)*
        #vis #sig {
            let __cache = &(#cache);
            let __key = ::core::clone::Clone::clone(&(#key));
            #krate::cached(__cache, __key, #ttl, move || async move {
                let __value: #ret = #block;
                __value
            })
            .await
        }
    })
}
