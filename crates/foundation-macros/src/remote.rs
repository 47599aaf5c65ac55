//! `#[derive(RemoteMessage)]`: a stable wire form with an explicit tag per variant.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Attribute, Data, DeriveInput, Error, Fields, Ident, LitInt, LitStr};

use crate::krate::actors_path;

/// serde implements its traits for tuples of up to 16 elements.
const MAX_FIELDS: usize = 16;

/// Expands the derive. On an error a stub impl is still emitted (its bodies never run: the
/// crate does not compile), so the macro's errors are the only ones, not also "the trait
/// `RemoteMessage` is not implemented" wherever the type is sent.
pub(crate) fn expand(input: DeriveInput) -> TokenStream {
    if !input.generics.params.is_empty() {
        return Error::new_spanned(
            &input.generics,
            "a remote message cannot be generic: a peer decodes one concrete type; define one message type per payload",
        )
        .to_compile_error();
    }
    if let Data::Union(u) = &input.data {
        return Error::new_spanned(
            u.union_token,
            "a union cannot be a remote message: use an enum with a tag per variant",
        )
        .to_compile_error();
    }

    let mut errors: Option<Error> = None;
    let mut push = |e: Error| match &mut errors {
        Some(all) => all.combine(e),
        None => errors = Some(e),
    };
    let mut type_name = None;
    let mut krate = None;
    for attr in remote_attrs(&input.attrs) {
        let parsed = attr.parse_nested_meta(|meta| {
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
        });
        if let Err(e) = parsed {
            push(e);
        }
    }
    let ident = &input.ident;
    let type_name = type_name.unwrap_or_else(|| ident.to_string());
    let krate = krate.unwrap_or_else(actors_path);
    let p = quote!(#krate::remote::__private);
    let trait_ = quote!(#krate::remote::RemoteMessage);
    let name = quote!(<#ident as #trait_>::TYPE_NAME);
    let l = Locals::new();
    let Locals {
        this,
        out,
        bytes,
        rest,
        tag: wire_tag,
        other,
    } = &l;
    let mut wire = Wire {
        p: p.clone(),
        out: out.clone(),
        name: name.clone(),
        field: quote!(#krate::remote::WireField),
        error: quote!(#krate::remote::WireError),
        arities: Vec::new(),
    };

    let mut checks = Vec::new();
    let (tags, tag_fn, encode, decode) = match &input.data {
        Data::Struct(s) => {
            if let Err(e) = check_fields(&s.fields, &p, &mut checks) {
                push(e);
            }
            let (pat, names, tys) = destructure(&s.fields);
            let ctor = construct(ident, &s.fields, &names);
            let put = wire.put(&names, &tys, &quote!(::core::option::Option::None));
            let take = wire.take(&tys, bytes, &quote!(::core::option::Option::None));
            (
                quote!(&[]),
                quote!(::core::option::Option::None),
                quote! {
                    let #ident #pat = #this;
                    #put
                },
                quote! {
                    let (#(#names,)*) = #take?;
                    ::core::result::Result::Ok(#ctor)
                },
            )
        }
        Data::Enum(e) => {
            let mut seen: Vec<(u32, &Ident)> = Vec::new();
            let mut tag_arms = Vec::new();
            let mut enc_arms = Vec::new();
            let mut dec_arms = Vec::new();
            let mut tag_list = Vec::new();
            for v in &e.variants {
                let tag = match variant_tag(&v.attrs) {
                    Ok(Some((tag, span))) => {
                        if let Some((_, prev)) = seen.iter().find(|(t, _)| *t == tag) {
                            push(Error::new(
                                span,
                                format!(
                                    "`{prev}` has wire tag {tag} already; give `{}` a tag of its own",
                                    v.ident
                                ),
                            ));
                            continue;
                        }
                        seen.push((tag, &v.ident));
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
                let ctor = construct(&quote!(#ident::#vi), &v.fields, &names);
                let some_tag = quote!(::core::option::Option::Some(#tag));
                let put = wire.put(&names, &tys, &some_tag);
                let take = wire.take(&tys, rest, &some_tag);
                tag_list.push(tag);
                tag_arms.push(quote!(Self::#vi { .. } => #some_tag));
                enc_arms.push(quote! {
                    #ident::#vi #pat => {
                        #p::put_tag(#out, #tag);
                        #put
                    }
                });
                dec_arms.push(quote! {
                    #tag => {
                        let (#(#names,)*) = #take?;
                        ::core::result::Result::Ok(#ctor)
                    }
                });
            }
            (
                quote!(&[#(#tag_list),*]),
                quote!(match *self { #(#tag_arms,)* }),
                if e.variants.is_empty() {
                    quote!(match *#this {})
                } else {
                    quote!(match #this { #(#enc_arms)* })
                },
                quote! {
                    let (#wire_tag, #rest) = #p::take_tag(#bytes, #name)?;
                    match #wire_tag {
                        #(#dec_arms)*
                        #other => ::core::result::Result::Err(#p::unknown_tag(#name, #other, <#ident as #trait_>::TAGS)),
                    }
                },
            )
        }
        Data::Union(_) => unreachable!("refused above"),
    };

    let error = &wire.error;
    let Some(errors) = errors else {
        let helpers = wire.helpers();
        return quote! {
            const _: () = {
                #helpers

                // The checks, the encoder and the decoder are one body (closures are
                // checked with it): rustc then reports a field type without serde's
                // traits once, not once per function that uses it.
                #[allow(clippy::type_complexity)]
                const __CODEC: (
                    fn(&#ident, &mut ::std::vec::Vec<u8>) -> ::core::result::Result<(), #error>,
                    fn(&[u8]) -> ::core::result::Result<#ident, #error>,
                ) = {
                    #(#checks)*
                    (
                        |#this, #out| { #encode },
                        |#bytes| { #decode },
                    )
                };

                impl #trait_ for #ident {
                    const TYPE_NAME: &'static str = #type_name;
                    const TAGS: &'static [u32] = #tags;

                    fn tag(&self) -> ::core::option::Option<u32> {
                        #tag_fn
                    }

                    #[inline]
                    fn encode(&self, out: &mut ::std::vec::Vec<u8>) -> ::core::result::Result<(), #error> {
                        #p::encode(self, out, __CODEC.0)
                    }

                    #[inline]
                    fn from_bytes(bytes: &[u8]) -> ::core::result::Result<Self, #error> {
                        (__CODEC.1)(bytes)
                    }
                }
            };
        };
    };
    let errors = errors.to_compile_error();
    quote! {
        const _: () = {
            #(#checks)*

            impl #trait_ for #ident {
                const TYPE_NAME: &'static str = #type_name;
                const TAGS: &'static [u32] = &[];

                fn tag(&self) -> ::core::option::Option<u32> {
                    ::core::unreachable!()
                }

                fn encode(&self, _: &mut ::std::vec::Vec<u8>) -> ::core::result::Result<(), #error> {
                    ::core::unreachable!()
                }

                fn from_bytes(_: &[u8]) -> ::core::result::Result<Self, #error> {
                    ::core::unreachable!()
                }
            }
        };
        #errors
    }
}

/// Writes and reads fields through helpers bounded by `WireField`, with each field's type
/// as an explicit generic argument: a type without serde's traits is then reported at the
/// field with `WireField`'s message, the same error at the same place as the field's
/// check, which rustc reports once per body.
struct Wire {
    p: TokenStream,
    /// The encoder's output buffer.
    out: Ident,
    /// The message's `TYPE_NAME`.
    name: TokenStream,
    field: TokenStream,
    error: TokenStream,
    /// The field counts `take` is needed for.
    arities: Vec<usize>,
}

impl Wire {
    /// Appends the fields one by one: postcard writes a tuple as its elements in order, so
    /// the bytes are those of the tuple.
    fn put(&self, names: &[Ident], tys: &[&syn::Type], tag: &TokenStream) -> TokenStream {
        let Wire { name, out, .. } = self;
        let puts = names
            .iter()
            .zip(tys)
            .map(|(n, ty)| quote_spanned!(ty.span()=> __put::<#ty>(#out, #n, #name, #tag)?;));
        // A struct without fields writes nothing.
        let unused = names.is_empty().then(|| quote!(let _ = #out;));
        quote! {
            #unused
            #(#puts)*
            ::core::result::Result::Ok(())
        }
    }

    /// Reads the fields, as a tuple, from exactly `bytes`.
    fn take(&mut self, tys: &[&syn::Type], bytes: &Ident, tag: &TokenStream) -> TokenStream {
        if !self.arities.contains(&tys.len()) {
            self.arities.push(tys.len());
        }
        let take = format_ident!("__take_{}", tys.len());
        let name = &self.name;
        quote!(#take::<#(#tys),*>(#bytes, #name, #tag))
    }

    /// `__put` and the `__take_N` used.
    fn helpers(&self) -> TokenStream {
        let Wire {
            p, field, error, ..
        } = self;
        let takes = self.arities.iter().map(|&n| {
            let take = format_ident!("__take_{}", n);
            let params: Vec<Ident> = (0..n).map(|i| format_ident!("T{}", i)).collect();
            quote! {
                #[inline]
                fn #take<#(#params: #field),*>(
                    bytes: &[u8],
                    type_name: &'static str,
                    tag: ::core::option::Option<u32>,
                ) -> ::core::result::Result<(#(#params,)*), #error> {
                    #p::take(bytes, type_name, tag)
                }
            }
        });
        quote! {
            #[inline]
            #[allow(dead_code)]
            fn __put<T: #field>(
                out: &mut ::std::vec::Vec<u8>,
                value: &T,
                type_name: &'static str,
                tag: ::core::option::Option<u32>,
            ) -> ::core::result::Result<(), #error> {
                #p::put(out, value, type_name, tag)
            }
            #(#takes)*
        }
    }
}

/// The generated codec's own local variables. Their span is `mixed_site`, so they live in
/// the macro's hygiene context: a field named `out`, `bytes` or `tag` is bound in the
/// caller's and neither shadows nor is shadowed by them.
struct Locals {
    /// The value being encoded.
    this: Ident,
    /// The encoder's output buffer.
    out: Ident,
    /// The decoder's input.
    bytes: Ident,
    /// The input after an enum's tag.
    rest: Ident,
    /// An enum's tag, read.
    tag: Ident,
    /// A tag no variant has.
    other: Ident,
}

impl Locals {
    fn new() -> Self {
        let local = |name| Ident::new(name, Span::mixed_site());
        Self {
            this: local("this"),
            out: local("out"),
            bytes: local("bytes"),
            rest: local("rest"),
            tag: local("tag"),
            other: local("other"),
        }
    }
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

/// A pattern binding every field, the bound names and the field types. Named fields are
/// bound under their own names (in the caller's hygiene context); tuple fields as `f0`,
/// `f1`… in the macro's, like [`Locals`].
fn destructure(fields: &Fields) -> (TokenStream, Vec<Ident>, Vec<&syn::Type>) {
    let tys = fields.iter().map(|f| &f.ty).collect();
    match fields {
        Fields::Named(n) => {
            let names: Vec<Ident> = n.named.iter().filter_map(|f| f.ident.clone()).collect();
            (quote!({ #(#names),* }), names, tys)
        }
        Fields::Unnamed(u) => {
            let names: Vec<Ident> = (0..u.unnamed.len())
                .map(|i| Ident::new(&format!("f{i}"), Span::mixed_site()))
                .collect();
            (quote!(( #(#names),* )), names, tys)
        }
        Fields::Unit => (quote!(), Vec::new(), tys),
    }
}

/// An expression building the value from the bound names.
fn construct(path: &impl ToTokens, fields: &Fields, names: &[Ident]) -> TokenStream {
    match fields {
        Fields::Named(_) => quote!(#path { #(#names),* }),
        Fields::Unnamed(_) => quote!(#path( #(#names),* )),
        Fields::Unit => quote!(#path),
    }
}
