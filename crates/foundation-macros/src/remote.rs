//! `#[derive(RemoteMessage)]`: a stable wire form with an explicit tag per variant, and
//! calls: a variant whose last field is a reply port.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Attribute, Data, DeriveInput, Error, Field, Fields, Ident, LitInt, LitStr, Type};

use crate::krate::actors_path;

/// serde implements its traits for tuples of up to 16 elements (a reply port is not one of
/// them).
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
    let mut struct_reply: Option<LitStr> = None;
    for attr in remote_attrs(&input.attrs) {
        let parsed = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("name") {
                let s: LitStr = meta.value()?.parse()?;
                type_name = Some(s.value());
            } else if meta.path.is_ident("reply") {
                let s: LitStr = meta.value()?.parse()?;
                if matches!(input.data, Data::Enum(_)) {
                    return Err(Error::new_spanned(
                        &s,
                        "a reply type's wire name goes on its call variant: `#[remote(tag = N, reply = \"...\")]`",
                    ));
                }
                struct_reply = Some(s);
            } else if meta.path.is_ident("crate") {
                let p: syn::Path = meta.value()?.parse()?;
                krate = Some(quote!(#p));
            } else if meta.path.is_ident("tag") || meta.path.is_ident("skip") {
                return Err(meta.error(
                    "wire tags go on enum variants: `#[remote(tag = N)]` or `#[remote(skip)]` above each variant",
                ));
            } else {
                return Err(meta.error(
                    "unknown option; expected `name = \"...\"`, `reply = \"...\"` (a struct call's reply type) or `crate = path`",
                ));
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
    let wire_type = quote!(#krate::remote::WireType);
    // A reply type's identity, computed at compile time.
    let reply_type =
        |name: &str| quote!(::core::option::Option::Some(const { #wire_type::named(#name) }));
    let name = quote!(<#ident as #trait_>::TYPE_NAME);
    let l = Locals::new();
    let Locals {
        this,
        out,
        bytes,
        rest,
        tag: wire_tag,
        other,
        reply,
        port,
    } = &l;
    let mut wire = Wire {
        p: p.clone(),
        out: out.clone(),
        name: name.clone(),
        field: quote!(#krate::remote::WireField),
        reply_bound: quote!(#krate::remote::WireReply),
        error: quote!(#krate::remote::WireError),
        krate: krate.clone(),
        arities: Vec::new(),
        ports: false,
    };

    let mut checks = Vec::new();
    let none = quote!(::core::option::Option::None);
    let mut answer_arms: Vec<TokenStream> = Vec::new();
    let (tags, call_tags, tag_fn, is_call_fn, encode, decode, reply_fn, reply_of_fn) = match &input
        .data
    {
        Data::Struct(s) => {
            let shape = match Shape::of(&s.fields) {
                Ok(shape) => shape,
                Err(e) => {
                    push(e);
                    Shape::empty()
                }
            };
            shape.checks(&p, &mut checks);
            let put = wire.put(&shape, &none);
            let take = wire.take(&shape, bytes, &none);
            let make_port = wire.port(&shape, reply, port, &none);
            let pat = shape.pattern(&s.fields);
            let ctor = shape.construct(ident, &s.fields, port);
            let is_call = shape.port.is_some();
            if let Some(arm) = shape.answer_arm(&quote!(#ident), &s.fields, port, &p, &name) {
                answer_arms.push(arm);
            }
            let reply = match (&shape.port, &struct_reply) {
                (Some(port), pinned) => reply_type(
                    &pinned
                        .as_ref()
                        .map_or_else(|| port.wire_name(), LitStr::value),
                ),
                (None, Some(pinned)) => {
                    push(Error::new_spanned(
                        pinned,
                        "`reply` names a call's reply type, and this struct is not a call: its last field is not a `ReplyPort<T>`",
                    ));
                    none.clone()
                }
                (None, None) => none.clone(),
            };
            (
                quote!(&[]),
                // A struct has no tag: `0` stands for its one shape (see `CALL_TAGS`).
                if is_call { quote!(&[0]) } else { quote!(&[]) },
                none.clone(),
                quote!(#is_call),
                quote! {
                    let #ident #pat = #this;
                    #put
                },
                {
                    let names = &shape.names;
                    quote! {
                        let (#(#names,)*) = #take?;
                        #make_port
                        ::core::result::Result::Ok(#ctor)
                    }
                },
                reply.clone(),
                quote! {
                    let _ = #bytes;
                    #reply
                },
            )
        }
        Data::Enum(e) => {
            let mut seen: Vec<(u32, &Ident)> = Vec::new();
            let mut tag_arms = Vec::new();
            let mut call_arms = Vec::new();
            let mut enc_arms = Vec::new();
            let mut dec_arms = Vec::new();
            let mut tag_list = Vec::new();
            let mut call_list = Vec::new();
            let mut reply_arms = Vec::new();
            let mut reply_of_arms = Vec::new();
            for v in &e.variants {
                let vi = &v.ident;
                let (tag, pinned) = match variant_attr(&v.attrs) {
                    Ok(VariantAttr::Tag(tag, span, pinned)) => {
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
                        (tag, pinned)
                    }
                    Ok(VariantAttr::Skip) => {
                        // Local only: no tag, no checks on its fields, and an error to
                        // encode it.
                        let vname = vi.to_string();
                        tag_arms.push(quote!(Self::#vi { .. } => ::core::option::Option::None));
                        call_arms.push(quote!(Self::#vi { .. } => false));
                        reply_arms.push(quote!(Self::#vi { .. } => ::core::option::Option::None));
                        enc_arms.push(quote! {
                            #ident::#vi { .. } => ::core::result::Result::Err(#p::local_only(#name, #vname)),
                        });
                        continue;
                    }
                    Ok(VariantAttr::None) => {
                        push(Error::new_spanned(
                            &v.ident,
                            format!(
                                "`{}` has no wire tag: add `#[remote(tag = N)]` (peers see the tag, not the name, so renaming or reordering variants stays compatible), or `#[remote(skip)]` for a local-only variant",
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
                let shape = match Shape::of(&v.fields) {
                    Ok(shape) => shape,
                    Err(e) => {
                        push(e);
                        continue;
                    }
                };
                shape.checks(&p, &mut checks);
                let names = &shape.names;
                let pat = shape.pattern(&v.fields);
                let ctor = shape.construct(&quote!(#ident::#vi), &v.fields, port);
                let some_tag = quote!(::core::option::Option::Some(#tag));
                let put = wire.put(&shape, &some_tag);
                let take = wire.take(&shape, rest, &some_tag);
                let make_port = wire.port(&shape, reply, port, &some_tag);
                let is_call = shape.port.is_some();
                if let Some(arm) =
                    shape.answer_arm(&quote!(#ident::#vi), &v.fields, port, &p, &name)
                {
                    answer_arms.push(arm);
                }
                tag_list.push(tag);
                let reply = match (&shape.port, &pinned) {
                    (Some(port), pinned) => {
                        let reply = reply_type(
                            &pinned
                                .as_ref()
                                .map_or_else(|| port.wire_name(), LitStr::value),
                        );
                        reply_of_arms.push(quote!(#tag => #reply));
                        reply
                    }
                    (None, Some(pinned)) => {
                        push(Error::new_spanned(
                            pinned,
                            format!(
                                "`reply` names a call's reply type, and `{vi}` is not a call: its last field is not a `ReplyPort<T>`"
                            ),
                        ));
                        continue;
                    }
                    (None, None) => none.clone(),
                };
                reply_arms.push(quote!(Self::#vi { .. } => #reply));
                if is_call {
                    call_list.push(tag);
                }
                tag_arms.push(quote!(Self::#vi { .. } => #some_tag));
                call_arms.push(quote!(Self::#vi { .. } => #is_call));
                enc_arms.push(quote! {
                    #ident::#vi #pat => {
                        #p::put_tag(#out, #tag);
                        #put
                    }
                });
                dec_arms.push(quote! {
                    #tag => {
                        let (#(#names,)*) = #take?;
                        #make_port
                        ::core::result::Result::Ok(#ctor)
                    }
                });
            }
            let (tag_fn, is_call_fn, encode, reply_fn) = if e.variants.is_empty() {
                (
                    quote!(match *self {}),
                    quote!(match *self {}),
                    quote!(match *#this {}),
                    quote!(match *self {}),
                )
            } else {
                (
                    quote!(match *self { #(#tag_arms,)* }),
                    quote!(match *self { #(#call_arms,)* }),
                    quote!(match #this { #(#enc_arms)* }),
                    quote!(match *self { #(#reply_arms,)* }),
                )
            };
            // The tag alone says which call it is: the fields are not decoded.
            let reply_of_fn = if reply_of_arms.is_empty() {
                quote! {
                    let _ = #bytes;
                    #none
                }
            } else {
                quote! {
                    match #p::take_tag(#bytes, #name) {
                        ::core::result::Result::Ok((#wire_tag, _)) => match #wire_tag {
                            #(#reply_of_arms,)*
                            _ => #none,
                        },
                        ::core::result::Result::Err(_) => #none,
                    }
                }
            };
            (
                quote!(&[#(#tag_list),*]),
                quote!(&[#(#call_list),*]),
                tag_fn,
                is_call_fn,
                encode,
                quote! {
                    let (#wire_tag, #rest) = #p::take_tag(#bytes, #name)?;
                    match #wire_tag {
                        #(#dec_arms)*
                        #other => ::core::result::Result::Err(#p::unknown_tag(#name, #other, <#ident as #trait_>::TAGS)),
                    }
                },
                reply_fn,
                reply_of_fn,
            )
        }
        Data::Union(_) => unreachable!("refused above"),
    };

    let error = &wire.error;
    let replier = quote!(#krate::remote::Replier);
    let answer_ty = quote!(::core::option::Option<#krate::remote::Answer>);
    // Only types with calls override the trait's default (`None`).
    let answer_fn = (!answer_arms.is_empty()).then(|| {
        quote! {
            #[inline]
            fn into_answer(self) -> #answer_ty {
                (__CODEC.2)(self)
            }
        }
    });
    let Some(errors) = errors else {
        let helpers = wire.helpers();
        return quote! {
            const _: () = {
                #helpers

                // The checks, the encoder and the decoder are one body (closures are
                // checked with it): rustc then reports a field type without serde's
                // traits once, not once per function that uses it.
                #[allow(clippy::type_complexity, unreachable_patterns)]
                const __CODEC: (
                    fn(&#ident, &mut ::std::vec::Vec<u8>) -> ::core::result::Result<(), #error>,
                    fn(&[u8], ::core::option::Option<#replier>) -> ::core::result::Result<#ident, #error>,
                    fn(#ident) -> #answer_ty,
                ) = {
                    #(#checks)*
                    (
                        |#this, #out| { #encode },
                        // A value that is not a call drops `reply` on return: its sink
                        // learns at once that no reply comes.
                        |#bytes, #reply| {
                            let _ = &#reply;
                            #decode
                        },
                        // A call's port, taken out to answer it from reply bytes.
                        |#this| match #this {
                            #(#answer_arms,)*
                            _ => ::core::option::Option::None,
                        },
                    )
                };

                impl #trait_ for #ident {
                    const TYPE_NAME: &'static str = #type_name;
                    const TAGS: &'static [u32] = #tags;
                    const CALL_TAGS: &'static [u32] = #call_tags;

                    fn tag(&self) -> ::core::option::Option<u32> {
                        #tag_fn
                    }

                    fn is_call(&self) -> bool {
                        #is_call_fn
                    }

                    fn reply_type(&self) -> ::core::option::Option<#wire_type> {
                        #reply_fn
                    }

                    fn reply_type_of(#bytes: &[u8]) -> ::core::option::Option<#wire_type> {
                        #reply_of_fn
                    }

                    #[inline]
                    fn encode(&self, out: &mut ::std::vec::Vec<u8>) -> ::core::result::Result<(), #error> {
                        #p::encode(self, out, __CODEC.0)
                    }

                    #[inline]
                    fn from_bytes(bytes: &[u8]) -> ::core::result::Result<Self, #error> {
                        (__CODEC.1)(bytes, ::core::option::Option::None)
                    }

                    #[inline]
                    fn from_bytes_with_reply(bytes: &[u8], reply: #replier) -> ::core::result::Result<Self, #error> {
                        (__CODEC.1)(bytes, ::core::option::Option::Some(reply))
                    }

                    #answer_fn
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
/// check, which rustc reports once per body. A reply port's type goes through a helper
/// bounded by `WireReply` in the same way.
struct Wire {
    p: TokenStream,
    /// The encoder's output buffer.
    out: Ident,
    /// The message's `TYPE_NAME`.
    name: TokenStream,
    field: TokenStream,
    reply_bound: TokenStream,
    error: TokenStream,
    krate: TokenStream,
    /// The field counts `take` is needed for.
    arities: Vec<usize>,
    /// Whether `__port` is needed.
    ports: bool,
}

impl Wire {
    /// Appends the fields one by one: postcard writes a tuple as its elements in order, so
    /// the bytes are those of the tuple. A reply port is not written.
    fn put(&self, shape: &Shape<'_>, tag: &TokenStream) -> TokenStream {
        let Wire { name, out, .. } = self;
        let puts = shape
            .names
            .iter()
            .zip(&shape.tys)
            .map(|(n, ty)| quote_spanned!(ty.span()=> __put::<#ty>(#out, #n, #name, #tag)?;));
        // A struct without fields writes nothing.
        let unused = shape.names.is_empty().then(|| quote!(let _ = #out;));
        quote! {
            #unused
            #(#puts)*
            ::core::result::Result::Ok(())
        }
    }

    /// Reads the fields, as a tuple, from exactly `bytes`.
    fn take(&mut self, shape: &Shape<'_>, bytes: &Ident, tag: &TokenStream) -> TokenStream {
        let tys = &shape.tys;
        if !self.arities.contains(&tys.len()) {
            self.arities.push(tys.len());
        }
        let take = format_ident!("__take_{}", tys.len());
        let name = &self.name;
        quote!(#take::<#(#tys),*>(#bytes, #name, #tag))
    }

    /// Binds `port` to the reply port made from `reply`, for a call; nothing otherwise.
    fn port(
        &mut self,
        shape: &Shape<'_>,
        reply: &Ident,
        port: &Ident,
        tag: &TokenStream,
    ) -> TokenStream {
        let Some(p) = &shape.port else {
            return TokenStream::new();
        };
        self.ports = true;
        let name = &self.name;
        let ty = &p.reply;
        let call = quote_spanned!(ty.span()=> __port::<#ty>(#reply, #name, #tag));
        quote!(let #port = #call?;)
    }

    /// `__put`, the `__take_N` used and `__port`.
    fn helpers(&self) -> TokenStream {
        let Wire {
            p,
            field,
            reply_bound,
            error,
            krate,
            ..
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
        let port = self.ports.then(|| {
            quote! {
                #[inline]
                fn __port<T: #reply_bound>(
                    reply: ::core::option::Option<#krate::remote::Replier>,
                    type_name: &'static str,
                    tag: ::core::option::Option<u32>,
                ) -> ::core::result::Result<#krate::ReplyPort<T>, #error> {
                    #p::port(reply, type_name, tag)
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
            #port
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
    /// The decoder's `Option<Replier>`.
    reply: Ident,
    /// A call's reply port, made from `reply`.
    port: Ident,
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
            reply: local("reply"),
            port: local("port"),
        }
    }
}

fn remote_attrs(attrs: &[Attribute]) -> impl Iterator<Item = &Attribute> {
    attrs.iter().filter(|a| a.path().is_ident("remote"))
}

/// What a variant's `#[remote(..)]` says.
enum VariantAttr {
    /// `tag = N`: its wire tag, and where it is written; with `reply = "…"`, its reply
    /// type's pinned wire name.
    Tag(u32, Span, Option<LitStr>),
    /// `skip`: local only.
    Skip,
    /// Nothing.
    None,
}

/// The `#[remote(tag = N)]` (with an optional `reply = "…"`) or `#[remote(skip)]` of a
/// variant.
fn variant_attr(attrs: &[Attribute]) -> syn::Result<VariantAttr> {
    let mut tag = None;
    let mut skip = None;
    let mut reply: Option<LitStr> = None;
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
            } else if meta.path.is_ident("skip") {
                skip = Some(meta.path.span());
                Ok(())
            } else if meta.path.is_ident("reply") {
                reply = Some(meta.value()?.parse()?);
                Ok(())
            } else {
                Err(meta.error(
                    "unknown option on a variant; expected `tag = N` (and `reply = \"...\"` for a call), or `skip` for a local-only variant",
                ))
            }
        })?;
    }
    match (tag, skip) {
        (Some(_), Some(span)) => Err(Error::new(
            span,
            "a variant is either on the wire (`tag = N`) or local only (`skip`), not both",
        )),
        (Some((n, span)), None) => Ok(VariantAttr::Tag(n, span, reply)),
        (None, Some(_)) => match reply {
            Some(r) => Err(Error::new_spanned(
                r,
                "a local-only variant (`skip`) has no wire form: its reply type needs no wire name",
            )),
            None => Ok(VariantAttr::Skip),
        },
        (None, None) => Ok(VariantAttr::None),
    }
}

/// The fields of a struct or a variant, as the codec sees them: those on the wire, and the
/// reply port, if it is a call.
struct Shape<'a> {
    /// The wire fields' bound names: named fields under their own names (in the caller's
    /// hygiene context); tuple fields as `f0`, `f1`… in the macro's, like [`Locals`].
    names: Vec<Ident>,
    /// The wire fields' types.
    tys: Vec<&'a Type>,
    /// The reply port, the last field of a call.
    port: Option<PortField>,
}

/// A reply port field.
struct PortField {
    /// Its name, for named fields.
    member: Option<Ident>,
    /// `T` in `ReplyPort<T>`.
    reply: Type,
}

impl<'a> Shape<'a> {
    /// A shape with nothing, for a struct whose fields were refused (an error is out).
    fn empty() -> Self {
        Self {
            names: Vec::new(),
            tys: Vec::new(),
            port: None,
        }
    }

    /// Sorts the fields, and checks where the reply port is.
    fn of(fields: &'a Fields) -> syn::Result<Self> {
        let all: Vec<&Field> = fields.iter().collect();
        let ports: Vec<(usize, Type)> = all
            .iter()
            .enumerate()
            .filter_map(|(i, f)| reply_port_of(&f.ty).map(|t| (i, t)))
            .collect();
        if let [_, second, ..] = &ports[..] {
            return Err(Error::new_spanned(
                &all[second.0].ty,
                "a second reply port: a call has one reply port, its last field; answer several values as one reply type (a tuple or a struct)",
            ));
        }
        let port = match ports.into_iter().next() {
            Some((i, _)) if i + 1 != all.len() => {
                return Err(Error::new_spanned(
                    &all[i].ty,
                    "the reply port is the last field of a call: move it after the other fields",
                ));
            }
            Some((_, reply)) => Some(PortField {
                member: all.last().and_then(|f| f.ident.clone()),
                reply,
            }),
            None => None,
        };
        let wire = &all[..all.len() - usize::from(port.is_some())];
        if wire.len() > MAX_FIELDS {
            return Err(Error::new_spanned(
                fields,
                format!("at most {MAX_FIELDS} fields per variant: group some of them in a struct"),
            ));
        }
        let names = wire
            .iter()
            .enumerate()
            .map(|(i, f)| match &f.ident {
                Some(name) => name.clone(),
                None => Ident::new(&format!("f{i}"), Span::mixed_site()),
            })
            .collect();
        Ok(Self {
            names,
            tys: wire.iter().map(|f| &f.ty).collect(),
            port,
        })
    }

    /// Compile-time checks that each field type can cross the wire, spanned at the type;
    /// and the reply type, spanned at it.
    fn checks(&self, p: &TokenStream, checks: &mut Vec<TokenStream>) {
        for ty in &self.tys {
            checks.push(quote_spanned!(ty.span()=> #p::assert_field::<#ty>();));
        }
        if let Some(port) = &self.port {
            let ty = &port.reply;
            checks.push(quote_spanned!(ty.span()=> #p::assert_reply::<#ty>();));
        }
    }

    /// A pattern binding every wire field (not the port).
    fn pattern(&self, fields: &Fields) -> TokenStream {
        let names = &self.names;
        match (fields, &self.port) {
            (Fields::Named(_), _) => quote!({ #(#names,)* .. }),
            (Fields::Unnamed(_), Some(_)) => quote!(( #(#names,)* _ )),
            (Fields::Unnamed(_), None) => quote!(( #(#names),* )),
            (Fields::Unit, _) => quote!(),
        }
    }

    /// For a call, the arm of `into_answer` that takes its port out as an `Answer`.
    fn answer_arm(
        &self,
        path: &TokenStream,
        fields: &Fields,
        port: &Ident,
        p: &TokenStream,
        name: &TokenStream,
    ) -> Option<TokenStream> {
        let pf = self.port.as_ref()?;
        let ty = &pf.reply;
        let pat = match (fields, &pf.member) {
            (Fields::Named(_), Some(m)) => quote!(#path { #m: #port, .. }),
            (Fields::Unnamed(_), _) => {
                let skip = self.names.iter().map(|_| quote!(_));
                quote!(#path( #(#skip,)* #port ))
            }
            _ => return None,
        };
        Some(quote! {
            #pat => ::core::option::Option::Some(#p::answer::<#ty>(#port, #name))
        })
    }

    /// An expression building the value from the bound names and `port`.
    fn construct(&self, path: &impl ToTokens, fields: &Fields, port: &Ident) -> TokenStream {
        let names = &self.names;
        match (fields, &self.port) {
            (
                Fields::Named(_),
                Some(PortField {
                    member: Some(m), ..
                }),
            ) => {
                quote!(#path { #(#names,)* #m: #port })
            }
            (Fields::Named(_), _) => quote!(#path { #(#names),* }),
            (Fields::Unnamed(_), Some(_)) => quote!(#path( #(#names,)* #port )),
            (Fields::Unnamed(_), None) => quote!(#path( #(#names),* )),
            (Fields::Unit, _) => quote!(#path),
        }
    }
}

impl PortField {
    /// The reply type's default wire name: the type as written, each path cut to its last
    /// segment (`std::option::Option<u64>` gives `Option<u64>`).
    fn wire_name(&self) -> String {
        let mut out = String::new();
        type_wire_name(&self.reply, &mut out);
        out
    }
}

/// Writes `ty` as Rust spells it, with each path cut to its last segment and its generic
/// arguments written the same way: the same whatever the path it is reached by, so moving
/// a type to another module, or importing it instead of writing its path, keeps its name.
fn type_wire_name(ty: &Type, out: &mut String) {
    match ty {
        Type::Path(p) if p.qself.is_none() => match p.path.segments.last() {
            Some(last) => {
                out.push_str(&last.ident.to_string());
                if let syn::PathArguments::AngleBracketed(args) = &last.arguments {
                    out.push('<');
                    for (i, arg) in args.args.iter().enumerate() {
                        if i > 0 {
                            out.push_str(", ");
                        }
                        match arg {
                            syn::GenericArgument::Type(t) => type_wire_name(t, out),
                            other => tokens(other, out),
                        }
                    }
                    out.push('>');
                }
            }
            None => tokens(ty, out),
        },
        Type::Tuple(t) => {
            out.push('(');
            for (i, elem) in t.elems.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                type_wire_name(elem, out);
            }
            if t.elems.len() == 1 {
                out.push(',');
            }
            out.push(')');
        }
        Type::Array(a) => {
            out.push('[');
            type_wire_name(&a.elem, out);
            out.push_str("; ");
            tokens(&a.len, out);
            out.push(']');
        }
        Type::Slice(s) => {
            out.push('[');
            type_wire_name(&s.elem, out);
            out.push(']');
        }
        Type::Reference(r) => {
            out.push('&');
            if let Some(l) = &r.lifetime {
                out.push_str(&l.to_string());
                out.push(' ');
            }
            if r.mutability.is_some() {
                out.push_str("mut ");
            }
            type_wire_name(&r.elem, out);
        }
        Type::Paren(p) => type_wire_name(&p.elem, out),
        Type::Group(g) => type_wire_name(&g.elem, out),
        other => tokens(other, out),
    }
}

/// Anything else, as its tokens.
fn tokens(t: &impl ToTokens, out: &mut String) {
    out.push_str(&t.to_token_stream().to_string());
}

/// `T` in a reply port's type: a path whose last segment is `ReplyPort<T>` or
/// `RpcReplyPort<T>` (foundation-actors' name and ractor's for the same type).
pub(crate) fn reply_port_of(ty: &Type) -> Option<Type> {
    let Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    if last.ident != "ReplyPort" && last.ident != "RpcReplyPort" {
        return None;
    }
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.first() {
        Some(syn::GenericArgument::Type(t)) if args.args.len() == 1 => Some(t.clone()),
        _ => None,
    }
}
