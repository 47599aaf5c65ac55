//! `#[derive(RemoteMessage)]`: a stable wire form with an explicit tag per variant.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Attribute, Data, DeriveInput, Error, Fields, Ident, LitInt, LitStr};

use crate::krate::actors_path;

/// serde implements its traits for tuples of up to 16 elements.
const MAX_FIELDS: usize = 16;

pub(crate) fn expand(input: DeriveInput) -> syn::Result<TokenStream> {
    if !input.generics.params.is_empty() {
        return Err(Error::new_spanned(
            &input.generics,
            "a remote message cannot be generic: a peer decodes one concrete type; define one message type per payload",
        ));
    }
    let mut type_name = None;
    let mut krate = None;
    for attr in remote_attrs(&input.attrs) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("name") {
                let s: LitStr = meta.value()?.parse()?;
                type_name = Some(s.value());
            } else if meta.path.is_ident("crate") {
                let p: syn::Path = meta.value()?.parse()?;
                krate = Some(quote!(#p));
            } else if meta.path.is_ident("tag") {
                return Err(meta.error(
                    "wire tags go on enum variants: `#[remote(tag = N)]` above each variant",
                ));
            } else {
                return Err(
                    meta.error("unknown option; expected `name = \"...\"` or `crate = path`")
                );
            }
            Ok(())
        })?;
    }
    let ident = &input.ident;
    let type_name = type_name.unwrap_or_else(|| ident.to_string());
    let krate = krate.unwrap_or_else(actors_path);
    let p = quote!(#krate::remote::__private);

    let mut checks = Vec::new();
    let (tags, tag_fn, encode, decode) = match &input.data {
        Data::Struct(s) => {
            check_fields(&s.fields, &p, &mut checks)?;
            let (pat, names, tys) = destructure(&s.fields);
            let ctor = construct(&quote!(Self), &s.fields, &names);
            (
                quote!(&[]),
                quote!(::core::option::Option::None),
                quote! {
                    let Self #pat = self;
                    #p::put(out, &(#(#names,)*), Self::TYPE_NAME, ::core::option::Option::None)
                },
                quote! {
                    let (#(#names,)*): (#(#tys,)*) = #p::take(bytes, Self::TYPE_NAME, ::core::option::Option::None)?;
                    ::core::result::Result::Ok(#ctor)
                },
            )
        }
        Data::Enum(e) => {
            let mut seen: Vec<(u32, &Ident, proc_macro2::Span)> = Vec::new();
            let mut errors: Option<Error> = None;
            let mut push = |e: Error| match &mut errors {
                Some(all) => all.combine(e),
                None => errors = Some(e),
            };
            let mut tag_arms = Vec::new();
            let mut enc_arms = Vec::new();
            let mut dec_arms = Vec::new();
            let mut tag_list = Vec::new();
            for v in &e.variants {
                let tag = match variant_tag(&v.attrs) {
                    Ok(Some((tag, span))) => {
                        if let Some((_, prev, pspan)) = seen.iter().find(|(t, _, _)| *t == tag) {
                            let mut err = Error::new(
                                span,
                                format!(
                                    "wire tag {tag} is used twice: `{prev}` has it too; every variant needs its own tag"
                                ),
                            );
                            err.combine(Error::new(*pspan, format!("`{prev}` has tag {tag} here")));
                            push(err);
                            continue;
                        }
                        seen.push((tag, &v.ident, span));
                        tag
                    }
                    Ok(None) => {
                        push(Error::new_spanned(
                            &v.ident,
                            format!(
                                "`{}` has no wire tag: add `#[remote(tag = N)]` (peers see the tag, not the name, so renaming or reordering variants stays compatible)",
                                v.ident
                            ),
                        ));
                        continue;
                    }
                    Err(e) => {
                        push(e);
                        continue;
                    }
                };
                if let Err(e) = check_fields(&v.fields, &p, &mut checks) {
                    push(e);
                    continue;
                }
                let vi = &v.ident;
                let (pat, names, tys) = destructure(&v.fields);
                let ctor = construct(&quote!(Self::#vi), &v.fields, &names);
                tag_list.push(tag);
                tag_arms.push(quote!(Self::#vi { .. } => ::core::option::Option::Some(#tag)));
                enc_arms.push(quote! {
                    Self::#vi #pat => {
                        #p::put_tag(out, #tag);
                        #p::put(out, &(#(#names,)*), Self::TYPE_NAME, ::core::option::Option::Some(#tag))
                    }
                });
                dec_arms.push(quote! {
                    #tag => {
                        let (#(#names,)*): (#(#tys,)*) = #p::take(rest, Self::TYPE_NAME, ::core::option::Option::Some(#tag))?;
                        ::core::result::Result::Ok(#ctor)
                    }
                });
            }
            if let Some(e) = errors {
                return Err(e);
            }
            (
                quote!(&[#(#tag_list),*]),
                quote!(match *self { #(#tag_arms,)* }),
                if e.variants.is_empty() {
                    quote!(match *self {})
                } else {
                    quote!(match self { #(#enc_arms)* })
                },
                quote! {
                    let (tag, rest) = #p::take_tag(bytes, Self::TYPE_NAME)?;
                    match tag {
                        #(#dec_arms)*
                        other => ::core::result::Result::Err(#p::unknown_tag(Self::TYPE_NAME, other, Self::TAGS)),
                    }
                },
            )
        }
        Data::Union(u) => {
            return Err(Error::new_spanned(
                u.union_token,
                "a union cannot be a remote message: use an enum with a tag per variant",
            ));
        }
    };

    Ok(quote! {
        const _: () = {
            #(#checks)*
        };

        impl #krate::remote::RemoteMessage for #ident {
            const TYPE_NAME: &'static str = #type_name;
            const TAGS: &'static [u32] = #tags;

            fn tag(&self) -> ::core::option::Option<u32> {
                #tag_fn
            }

            fn encode(&self, out: &mut ::std::vec::Vec<u8>) -> ::core::result::Result<(), #krate::remote::WireError> {
                #encode
            }

            fn from_bytes(bytes: &[u8]) -> ::core::result::Result<Self, #krate::remote::WireError> {
                #decode
            }
        }
    })
}

fn remote_attrs(attrs: &[Attribute]) -> impl Iterator<Item = &Attribute> {
    attrs.iter().filter(|a| a.path().is_ident("remote"))
}

/// The `#[remote(tag = N)]` of a variant.
fn variant_tag(attrs: &[Attribute]) -> syn::Result<Option<(u32, proc_macro2::Span)>> {
    let mut tag = None;
    for attr in remote_attrs(attrs) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("tag") {
                let lit: LitInt = meta.value()?.parse()?;
                let n = lit.base10_parse::<u32>().map_err(|_| {
                    Error::new_spanned(&lit, "a wire tag is a `u32` literal (0 to 4294967295)")
                })?;
                if tag.is_some() {
                    return Err(meta.error("a variant has one wire tag"));
                }
                tag = Some((n, lit.span()));
                Ok(())
            } else {
                Err(meta.error("unknown option on a variant; expected `tag = N`"))
            }
        })?;
    }
    Ok(tag)
}

/// Compile-time checks that each field type can cross the wire, spanned at the type.
fn check_fields(
    fields: &Fields,
    p: &TokenStream,
    checks: &mut Vec<TokenStream>,
) -> syn::Result<()> {
    if fields.len() > MAX_FIELDS {
        return Err(Error::new_spanned(
            fields,
            format!("at most {MAX_FIELDS} fields per variant: group some of them in a struct"),
        ));
    }
    for f in fields {
        let ty = &f.ty;
        checks.push(quote_spanned!(ty.span()=> #p::assert_field::<#ty>();));
    }
    Ok(())
}

/// A pattern binding every field, the bound names and the field types.
fn destructure(fields: &Fields) -> (TokenStream, Vec<Ident>, Vec<&syn::Type>) {
    let tys = fields.iter().map(|f| &f.ty).collect();
    match fields {
        Fields::Named(n) => {
            let names: Vec<Ident> = n.named.iter().filter_map(|f| f.ident.clone()).collect();
            (quote!({ #(#names),* }), names, tys)
        }
        Fields::Unnamed(u) => {
            let names: Vec<Ident> = (0..u.unnamed.len())
                .map(|i| format_ident!("f{}", i))
                .collect();
            (quote!(( #(#names),* )), names, tys)
        }
        Fields::Unit => (quote!(), Vec::new(), tys),
    }
}

/// An expression building the value from the bound names.
fn construct(path: &TokenStream, fields: &Fields, names: &[Ident]) -> TokenStream {
    match fields {
        Fields::Named(_) => quote!(#path { #(#names),* }),
        Fields::Unnamed(_) => quote!(#path( #(#names),* )),
        Fields::Unit => quote!(#path),
    }
}
