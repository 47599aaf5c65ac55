//! `#[actor]`: an `impl` block with handler methods becomes a message enum, a dispatch
//! `match`, a typed handle and spawn functions.

use heck::{ToSnakeCase as _, ToUpperCamelCase as _};
use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::visit_mut::{self, VisitMut};
use syn::{
    Attribute, Error, FnArg, Ident, ImplItem, ImplItemFn, ItemImpl, LitInt, LitStr, Meta, Pat,
    Path, ReturnType, Type, Visibility, parse_quote,
};

use crate::krate::{actors_path, registry_path};
use crate::remote::reply_port_of;

/// Names every handle has: a handler may not take them.
const HANDLE_METHODS: &[&str] = &[
    "with_timeout",
    "timeout",
    "whereis",
    "register",
    "addr",
    "stop",
    "kill",
    "is_running",
    "from",
    "clone",
];

/// Names generated on the actor type itself.
const TYPE_FNS: &[&str] = &["spawn", "spawn_supervised", "child_spec"];

/// The arguments of `#[actor(...)]`.
#[derive(Default)]
pub(crate) struct Args {
    krate: Option<Path>,
    vis: Option<Visibility>,
    handle: Option<Ident>,
    message: Option<Ident>,
    /// `remote` or `remote = "wire.Name"`: the message enum derives `RemoteMessage`.
    remote: Option<Option<LitStr>>,
    /// `handoff`: the type is its own snapshot; the generated actor implements the
    /// registry's `Handoff` (its span, where a missing `Serialize` is reported).
    handoff: Option<Span>,
}

impl Args {
    pub(crate) fn parse(attr: TokenStream) -> syn::Result<Self> {
        let mut args = Args::default();
        let parser = syn::meta::parser(|meta| {
            if meta.path.is_ident("crate") {
                args.krate = Some(meta.value()?.parse()?);
            } else if meta.path.is_ident("vis") {
                args.vis = Some(meta.value()?.parse()?);
            } else if meta.path.is_ident("handle") {
                args.handle = Some(meta.value()?.parse()?);
            } else if meta.path.is_ident("message") {
                args.message = Some(meta.value()?.parse()?);
            } else if meta.path.is_ident("remote") {
                let name = if meta.input.peek(syn::Token![=]) {
                    Some(meta.value()?.parse()?)
                } else {
                    None
                };
                args.remote = Some(name);
            } else if meta.path.is_ident("handoff") {
                args.handoff = Some(syn::spanned::Spanned::span(&meta.path));
            } else {
                return Err(meta.error(
                    "unknown `#[actor]` option; expected `vis = pub`, `handle = Name`, `message = Name`, `remote`, `remote = \"wire.Name\"`, `handoff` or `crate = path`",
                ));
            }
            Ok(())
        });
        syn::parse::Parser::parse2(parser, attr)?;
        Ok(args)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Cast,
    Call,
    Info,
    Init,
    Terminate,
    /// Runs after `#[actor(handoff)]` restored the state (instead of `#[init]`).
    Restored,
}

impl Kind {
    fn attr(self) -> &'static str {
        match self {
            Kind::Cast => "cast",
            Kind::Call => "call",
            Kind::Info => "info",
            Kind::Init => "init",
            Kind::Terminate => "terminate",
            Kind::Restored => "restored",
        }
    }
}

/// One message parameter of a handler.
struct Param {
    name: Ident,
    ty: Type,
}

/// The kind of handler attribute `a` is, if it is one.
fn handler_kind(a: &Attribute) -> Option<Kind> {
    [
        Kind::Cast,
        Kind::Call,
        Kind::Info,
        Kind::Init,
        Kind::Terminate,
        Kind::Restored,
    ]
    .into_iter()
    .find(|k| a.path().is_ident(k.attr()))
}

/// A handler or hook, as parsed.
struct Handler {
    kind: Kind,
    name: Ident,
    variant: Ident,
    params: Vec<Param>,
    takes_ctx: bool,
    is_async: bool,
    reply: Option<Type>,
    /// A `#[call]` that replies later through a `ReplyPort` parameter (`GenServer.reply`),
    /// instead of with its return value.
    deferred: bool,
    docs: Vec<Attribute>,
    /// Its `#[cfg(..)]` attributes, repeated on everything generated from it.
    cfgs: Vec<Attribute>,
    /// Its wire tag (`#[cast(tag = N)]`), for `#[actor(remote)]`.
    tag: Option<LitInt>,
}

impl Handler {
    /// Whether it becomes a variant of the message enum (hooks do not).
    fn is_message(&self) -> bool {
        matches!(self.kind, Kind::Cast | Kind::Call | Kind::Info)
    }
}

/// Expands `#[actor]`. On an error the impl block is still emitted, and so is everything
/// the valid handlers generate: the macro's own errors are then the only ones, not also
/// "cannot find type `CounterRef`" wherever the actor is used.
pub(crate) fn expand(attr: TokenStream, mut item: ItemImpl) -> TokenStream {
    let args = match Args::parse(attr) {
        Ok(a) => a,
        Err(e) => return fallback(item, e),
    };
    if let Some((_, path, _)) = &item.trait_ {
        let e = Error::new_spanned(
            path,
            "`#[actor]` goes on an inherent impl (`impl Counter { ... }`), not a trait impl",
        );
        return fallback(item, e);
    }
    if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
        let e = Error::new_spanned(
            &item.generics,
            "an actor cannot be generic: its message enum and handle need concrete types; write it for one type (`type IntCell = Cell<u64>;` then `#[actor] impl IntCell`)",
        );
        return fallback(item, e);
    }
    let self_ty = (*item.self_ty).clone();
    let ty_ident = match actor_ident(&self_ty) {
        Ok(i) => i,
        Err(e) => return fallback(item, e),
    };
    // Generated on the type itself: a method of the same name would be defined twice.
    for it in &item.items {
        if let ImplItem::Fn(f) = it {
            let name = f.sig.ident.to_string();
            let handoff_fn = args.handoff.is_some() && name == "handoff_actor";
            if TYPE_FNS.contains(&name.as_str()) || handoff_fn {
                let e = Error::new_spanned(
                    &f.sig.ident,
                    format!("`#[actor]` generates `{ty_ident}::{name}`; rename this method"),
                );
                return fallback(item, e);
            }
        }
    }

    let mut errors: Option<Error> = None;
    let mut push = |e: Error| match &mut errors {
        Some(all) => all.combine(e),
        None => errors = Some(e),
    };

    let mut parsed = Vec::new();
    for it in &mut item.items {
        let ImplItem::Fn(f) = it else { continue };
        match parse_handler(f) {
            Ok(Some(h)) => parsed.push(h),
            Ok(None) => {}
            Err(e) => push(e),
        }
    }

    // A handler in conflict with an earlier one is reported and left out, as an invalid
    // one is: it stays a plain method.
    let mut handlers: Vec<Handler> = Vec::new();
    for h in parsed {
        match check_names(&h, &handlers, &ty_ident) {
            Ok(()) => handlers.push(h),
            Err(e) => push(e),
        }
    }
    // Wire tags: with `remote`, every cast and call has one of its own; without, none. A
    // handler whose tag is wrong is reported and kept, as local only: the derive then adds
    // no error of its own.
    match &args.remote {
        None => {
            for h in &mut handlers {
                if let Some(t) = h.tag.take() {
                    push(Error::new_spanned(
                        &t,
                        "`tag` is a wire tag, for an actor whose messages cross nodes: add `remote` to its attribute (`#[actor(remote)]`), or drop the tag",
                    ));
                }
            }
        }
        Some(_) => {
            let mut seen: Vec<(u32, Ident)> = Vec::new();
            for h in &mut handlers {
                if !matches!(h.kind, Kind::Cast | Kind::Call) {
                    continue;
                }
                let Some(t) = &h.tag else {
                    push(Error::new_spanned(
                        &h.name,
                        format!(
                            "`#[actor(remote)]`: `{}` has no wire tag; write `#[{}(tag = N)]` (peers see the tag, not the name, so renaming a handler stays compatible)",
                            h.name,
                            h.kind.attr()
                        ),
                    ));
                    continue;
                };
                // Checked when parsed.
                let n = t.base10_parse::<u32>().unwrap_or_default();
                if let Some((_, prev)) = seen.iter().find(|(m, _)| *m == n) {
                    push(Error::new_spanned(
                        t,
                        format!(
                            "`{prev}` has wire tag {n} already; give `{}` a tag of its own",
                            h.name
                        ),
                    ));
                    h.tag = None;
                } else {
                    seen.push((n, h.name.clone()));
                }
            }
        }
    }
    // `#[restored]` runs after a handoff's restore: without `handoff` there is none.
    if args.handoff.is_none() {
        if let Some(h) = handlers.iter().find(|h| h.kind == Kind::Restored) {
            push(Error::new_spanned(
                &h.name,
                "`#[restored]` runs when a handed-over state is restored, which needs `#[actor(handoff)]`: add `handoff` to the attribute, or drop the hook",
            ));
        }
    }
    // The enum and the handle are outside the impl, where `Self` means something else.
    for h in &mut handlers {
        for p in &mut h.params {
            Unself(&self_ty).visit_type_mut(&mut p.ty);
        }
        if let Some(r) = &mut h.reply {
            Unself(&self_ty).visit_type_mut(r);
        }
    }
    let errors = errors.map(|e| e.to_compile_error());
    let init = handlers.iter().find(|h| h.kind == Kind::Init);
    let terminate = handlers.iter().find(|h| h.kind == Kind::Terminate);

    let krate = args.krate.map(|p| quote!(#p)).unwrap_or_else(actors_path);
    // `pub` by default: a `pub` actor type's `TypedActor` impl names the enum and the
    // handle, and a less visible associated type is a hard error (E0446). Items that
    // expose the user's less visible types are allowed to (`private_interfaces`): the
    // user chose those types.
    let vis = args.vis.unwrap_or_else(|| parse_quote!(pub));
    let msg = args
        .message
        .unwrap_or_else(|| format_ident!("{}Msg", ty_ident));
    let handle = args
        .handle
        .unwrap_or_else(|| format_ident!("{}Ref", ty_ident));
    let name_str = ty_ident.to_string();

    let messages: Vec<&Handler> = handlers.iter().filter(|h| h.is_message()).collect();

    // The message enum.
    let variants = messages.iter().map(|h| {
        let v = &h.variant;
        let fields = h.params.iter().map(|p| &p.ty);
        let doc = match h.kind {
            Kind::Cast => format!(" A cast to [`{name_str}::{}`].", h.name),
            Kind::Call => format!(
                " A call to [`{name_str}::{}`], with its reply port.",
                h.name
            ),
            _ => format!(" An info message for [`{name_str}::{}`].", h.name),
        };
        let cfgs = &h.cfgs;
        // Info messages, and handlers whose tag was refused, stay local.
        let wire = args.remote.as_ref().map(|_| match &h.tag {
            Some(t) => quote!(#[remote(tag = #t)]),
            None => quote!(#[remote(skip)]),
        });
        match &h.reply {
            Some(r) => {
                quote!(#(#cfgs)* #[doc = #doc] #wire #v(#(#fields,)* #krate::ReplyPort<#r>))
            }
            None => quote!(#(#cfgs)* #[doc = #doc] #wire #v(#(#fields),*)),
        }
    });
    let remote_derive = args.remote.as_ref().map(|name| {
        let name = name.as_ref().map_or_else(|| msg.to_string(), LitStr::value);
        quote! {
            #[derive(#krate::remote::RemoteMessage)]
            #[remote(name = #name, crate = #krate)]
        }
    });
    let debug_arms = messages.iter().map(|h| {
        let v = &h.variant;
        let s = format!("{msg}::{v}");
        let cfgs = &h.cfgs;
        quote!(#(#cfgs)* Self::#v(..) => f.write_str(#s))
    });
    let from_impls = messages.iter().filter(|h| h.kind == Kind::Info).map(|h| {
        let v = &h.variant;
        let ty = &h.params[0].ty;
        let cfgs = &h.cfgs;
        quote! {
            #(#cfgs)*
            impl ::core::convert::From<#ty> for #msg {
                fn from(m: #ty) -> Self {
                    Self::#v(m)
                }
            }
        }
    });
    let msg_doc = match &args.remote {
        None => format!(
            " The messages of [`{name_str}`], generated by `#[actor]`: one variant per handler."
        ),
        Some(_) => format!(
            " The messages of [`{name_str}`], generated by `#[actor(remote)]`: one variant per handler; casts and calls cross nodes by their tags, info messages stay local."
        ),
    };

    // The generated actor's own locals: mixed-site, so no user name can meet them.
    let this = Ident::new("this", Span::mixed_site());
    let ctx = Ident::new("ctx", Span::mixed_site());
    let running = Ident::new("running", Span::mixed_site());
    let me = Ident::new("me", Span::mixed_site());
    let args_id = Ident::new("args", Span::mixed_site());
    let msg_id = Ident::new("msg", Span::mixed_site());
    let actor = format_ident!("__{}Actor", ty_ident);
    let actor_doc = format!(" Runs a [`{ty_ident}`] process: the dispatch `#[actor]` generates.");

    // The dispatch.
    let arms = messages.iter().map(|h| {
        let v = &h.variant;
        let f = &h.name;
        let names: Vec<&Ident> = h.params.iter().map(|p| &p.name).collect();
        let ctx_arg = h.takes_ctx.then(|| quote!(#ctx));
        let args = names.iter().map(|n| quote!(#n)).chain(ctx_arg);
        let awaited = h.is_async.then(|| quote!(.await));
        let at = Span::call_site().located_at(f.span());
        let call = quote_spanned!(at=> #this.#f(#(#args),*)#awaited);
        let cfgs = &h.cfgs;
        let arm = match h.kind {
            Kind::Call if h.deferred => {
                let reply = reply_ident();
                let args = names.iter().map(|n| quote!(#n)).chain([quote!(#reply)]).chain(h.takes_ctx.then(|| quote!(#ctx)));
                let call = quote_spanned!(at=> #this.#f(#(#args),*)#awaited);
                quote! {
                    #msg::#v(#(#names,)* #reply) => #krate::typed::HandlerResult::into_result(#call),
                }
            }
            Kind::Call => {
                let reply = reply_ident();
                quote! {
                    #msg::#v(#(#names,)* #reply) => {
                        // The caller may have given up waiting: nothing to do then.
                        let _ = #reply.send(#call);
                        ::core::result::Result::Ok(())
                    }
                }
            }
            _ => quote! {
                #msg::#v(#(#names),*) => #krate::typed::HandlerResult::into_result(#call),
            },
        };
        quote!(#(#cfgs)* #arm)
    });

    let (args_ty, init_fn) = match init {
        Some(h) => {
            let f = &h.name;
            let ty = h
                .params
                .first()
                .map(|p| p.ty.clone())
                .unwrap_or_else(|| parse_quote!(()));
            let arg = h.params.first().map(|_| quote!(#args_id));
            let ctx_arg = h.takes_ctx.then(|| quote!(#ctx));
            let args = arg.into_iter().chain(ctx_arg);
            let awaited = h.is_async.then(|| quote!(.await));
            let discard = h.params.is_empty().then(|| quote!(let () = #args_id;));
            (
                ty,
                quote! {
                    #discard
                    #krate::typed::InitResult::<#self_ty>::into_result(<#self_ty>::#f(#(#args),*)#awaited)
                },
            )
        }
        None => (
            parse_quote!(Self),
            quote!(::core::result::Result::Ok(#args_id)),
        ),
    };
    // `Self` in the args type means the actor's type; in the generated actor's impl it
    // would mean the generated actor.
    let mut args_ty = args_ty;
    Unself(&self_ty).visit_type_mut(&mut args_ty);
    // Restarts clone the args. The bounds are written `for<'a>` so that they are checked
    // where `spawn_supervised` or `child_spec` is used, not at the definition: an actor
    // that is never supervised need not be `Clone`.
    let spawn_supervised = quote!(#krate::typed::spawn_supervised::<Self>(sup, args).await);
    let child_spec = quote!(#krate::typed::child_spec::<Self>(#name_str, args));
    let terminate_fn = terminate.map(|h| {
        let f = &h.name;
        let ctx_arg = h.takes_ctx.then(|| quote!(#ctx));
        let awaited = h.is_async.then(|| quote!(.await));
        let at = Span::call_site().located_at(f.span());
        let call = quote_spanned!(at=> #this.#f(#ctx_arg)#awaited);
        quote! {
            async fn terminate(
                &self,
                #me: &#krate::Addr<#msg>,
                #running: &mut #krate::typed::Running<#self_ty>,
            ) -> ::core::result::Result<(), #krate::ActorError> {
                #[allow(unused_variables)]
                let (#this, #ctx) = #krate::typed::__private::parts(#running, #me);
                #krate::typed::HandlerResult::into_result(#call)
            }
        }
    });
    let handoff = args.handoff.map(|at| {
        let registry = registry_path();
        let snapshot = Ident::new("snapshot", Span::mixed_site());
        let hook = handlers.iter().find(|h| h.kind == Kind::Restored).map(|h| {
            let f = &h.name;
            let ctx_arg = h.takes_ctx.then(|| quote!(#ctx));
            let awaited = h.is_async.then(|| quote!(.await));
            let at = Span::call_site().located_at(f.span());
            let call = quote_spanned!(at=> #this.#f(#ctx_arg)#awaited);
            quote! {
                {
                    #[allow(unused_variables)]
                    let (#this, #ctx) = #krate::typed::__private::parts(&mut #running, #me);
                    #krate::typed::HandlerResult::into_result(#call)?;
                }
            }
        });
        let fn_doc = format!(
            " The actor that runs a `{name_str}` and hands its state over (`#[actor(handoff)]`): give it to `ShardedSpec::new(..)` with `.handoff()`, or return it from a `DistributedSpec::handoff_kind` maker. The `{name_str}` itself is the snapshot: a move or a passivation serializes it, and the next incarnation starts from it instead of `#[init]`."
        );
        // Spanned at `handoff`: a state that is not `Serialize + DeserializeOwned` is
        // reported there.
        let handoff_trait = quote_spanned!(at=> #registry::distributed::Handoff);
        let snapshot_ty = quote_spanned!(at=> #self_ty);
        let check = quote_spanned! {at=>
            const _: () = #krate::typed::__private::assert_handoff_state::<#self_ty>();
        };
        let impl_block = quote_spanned! {at=>
            impl #handoff_trait for #actor {
                type Snapshot = #snapshot_ty;

                fn export(&self, #running: #krate::typed::Running<#self_ty>) -> #self_ty {
                    #krate::typed::__private::into_state(#running)
                }

                async fn restore(
                    &self,
                    #me: &#krate::Addr<#msg>,
                    #snapshot: #self_ty,
                    _: #args_ty,
                ) -> ::core::result::Result<#krate::typed::Running<#self_ty>, #krate::ActorError> {
                    let owned = #krate::typed::__private::ctx::<#self_ty>(#me);
                    #[allow(unused_mut)]
                    let mut #running = #krate::typed::__private::running(#snapshot, owned);
                    #hook
                    ::core::result::Result::Ok(#running)
                }
            }
        };
        let fn_block = quote! {
            #[allow(private_interfaces)]
            impl #self_ty {
                #[doc = #fn_doc]
                #vis fn handoff_actor() -> impl #handoff_trait<Msg = #msg, Args = #args_ty, Snapshot = #self_ty> + ::core::clone::Clone {
                    #actor
                }
            }
        };
        quote!(#check #impl_block #fn_block)
    });
    let match_body = if messages.is_empty() {
        quote!(match #msg_id {})
    } else {
        quote!(match #msg_id { #(#arms)* })
    };

    // The handle's methods.
    let methods = messages
        .iter()
        .filter(|h| h.kind != Kind::Info)
        .map(|h| {
            let f = &h.name;
            let v = &h.variant;
            let docs = &h.docs;
            let cfgs = &h.cfgs;
            let names: Vec<&Ident> = h.params.iter().map(|p| &p.name).collect();
            let tys = h.params.iter().map(|p| &p.ty);
            match &h.reply {
                None => quote! {
                    #(#cfgs)*
                    #(#docs)*
                    ///
                    /// A cast: returns once the message is queued, not handled.
                    ///
                    /// # Errors
                    ///
                    /// The process stopped for good, or is restarting with a full backlog; the
                    /// message is handed back.
                    #vis async fn #f(&self, #(#names: #tys),*) -> ::core::result::Result<(), #krate::SendError<#msg>> {
                        self.addr.cast(#msg::#v(#(#names),*))
                    }
                },
                Some(r) => {
                    let reply = reply_ident();
                    quote! {
                        #(#cfgs)*
                        #(#docs)*
                        ///
                        /// A call: waits for the reply, at most the handle's timeout and never
                        /// past the context's deadline.
                        ///
                        /// # Errors
                        ///
                        /// The process stopped or is restarting with a full backlog, no reply
                        /// came in time, the deadline passed, or the reply port was dropped.
                        #vis async fn #f(&self, #(#names: #tys),*) -> ::core::result::Result<#r, #krate::CallError> {
                            self.addr
                                .call_timeout(|#reply| #msg::#v(#(#names,)* #reply), self.timeout)
                                .await
                        }
                    }
                }
            }
        });
    let handle_doc = format!(
        " A typed handle to a [`{name_str}`] process, generated by `#[actor]`: one method per `#[cast]` and `#[call]`. Cheap to clone; valid across restarts."
    );
    let spawn_doc = format!(" Starts a `{name_str}` with no supervisor (`GenServer.start`).");
    let sup_doc = format!(
        " Starts a `{name_str}` under `sup`: anonymous under a dynamic supervisor, with id `\"{name_str}\"` under a static one."
    );
    let spec_doc = format!(
        " A child spec for a `{name_str}` with id `\"{name_str}\"`; `args` is cloned for each restart."
    );

    quote! {
        #item

        #[doc = #msg_doc]
        #[allow(private_interfaces)]
        #remote_derive
        #vis enum #msg {
            #(#variants,)*
        }

        impl ::core::fmt::Debug for #msg {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                #[allow(unreachable_code)]
                match *self {
                    #(#debug_arms,)*
                }
            }
        }

        #(#from_impls)*

        #[doc = #handle_doc]
        #[derive(Clone, Debug)]
        #vis struct #handle {
            addr: #krate::Addr<#msg>,
            timeout: ::core::time::Duration,
        }

        #[allow(private_interfaces)]
        impl #handle {
            #(#methods)*

            /// The same handle, with calls that wait at most `timeout` (the context's
            /// deadline still applies).
            #vis fn with_timeout(&self, timeout: ::core::time::Duration) -> Self {
                Self { addr: self.addr.clone(), timeout }
            }

            /// The process registered as `name`, if it is this kind of actor and has not
            /// stopped for good.
            #vis fn whereis(name: &str) -> ::core::option::Option<Self> {
                #krate::Addr::<#msg>::whereis(name).map(Self::from)
            }

            /// Registers the process as `name` (valid across restarts).
            ///
            /// # Errors
            ///
            /// The name is taken by a process that is still running.
            #vis fn register(&self, name: &str) -> ::core::result::Result<(), #krate::SpawnError> {
                self.addr.register(name)
            }

            /// The process's address.
            #vis fn addr(&self) -> &#krate::Addr<#msg> {
                &self.addr
            }

            /// Asks the process to stop after the message in hand (a graceful stop).
            #vis fn stop(&self) {
                self.addr.stop(::core::option::Option::None)
            }

            /// Kills the process at once, as `Process.exit(pid, :kill)`: the message in
            /// hand is not finished and `#[terminate]` does not run; its supervisor sees
            /// `ExitReason::Killed`.
            #vis fn kill(&self) {
                self.addr.kill()
            }

            /// Whether an incarnation is running now.
            #vis fn is_running(&self) -> bool {
                self.addr.is_running()
            }
        }

        impl ::core::convert::From<#krate::Addr<#msg>> for #handle {
            fn from(addr: #krate::Addr<#msg>) -> Self {
                Self { addr, timeout: #krate::DEFAULT_CALL_TIMEOUT }
            }
        }

        #[allow(private_interfaces)]
        impl #self_ty {
            #[doc = #spawn_doc]
            ///
            /// # Errors
            ///
            /// Its `#[init]` failed or panicked.
            #vis async fn spawn(args: #args_ty) -> ::core::result::Result<#handle, #krate::SpawnError> {
                #krate::typed::spawn::<Self>(args).await
            }

            #[doc = #sup_doc]
            ///
            /// # Errors
            ///
            /// As `Supervisor::start_child`.
            #vis async fn spawn_supervised(
                sup: &(impl ::core::convert::AsRef<#krate::Supervisor> + ::core::marker::Sync + ?Sized),
                args: #args_ty,
            ) -> ::core::result::Result<#handle, #krate::SupervisorError>
            where
                for<'a> #args_ty: ::core::clone::Clone + ::core::marker::Sync,
            {
                #spawn_supervised
            }

            #[doc = #spec_doc]
            #vis fn child_spec(args: #args_ty) -> #krate::ChildSpec<#msg>
            where
                for<'a> #args_ty: ::core::clone::Clone + ::core::marker::Sync,
            {
                #child_spec
            }
        }

        impl #krate::TypedActor for #self_ty {
            type Msg = #msg;
            type Args = #args_ty;
            type Ref = #handle;
            const NAME: &'static str = #name_str;

            fn actor() -> impl #krate::Actor<Msg = #msg, Args = #args_ty> + ::core::clone::Clone {
                #actor
            }
        }

        // Private whatever the actor type's visibility: its state names that type, and a
        // private type in a more visible impl is an error. The spawn functions reach it
        // through `TypedActor::actor`.
        #[doc = #actor_doc]
        #[derive(Clone, Copy, Debug)]
        struct #actor;

        impl #krate::Actor for #actor {
            type Msg = #msg;
            type State = #krate::typed::Running<#self_ty>;
            type Args = #args_ty;

            async fn init(
                &self,
                #me: &#krate::Addr<#msg>,
                #args_id: #args_ty,
            ) -> ::core::result::Result<#krate::typed::Running<#self_ty>, #krate::ActorError> {
                let owned = #krate::typed::__private::ctx::<#self_ty>(#me);
                #[allow(unused_variables)]
                let #ctx = &owned;
                let state: ::core::result::Result<#self_ty, #krate::ActorError> = { #init_fn };
                let state = state?;
                ::core::result::Result::Ok(#krate::typed::__private::running(state, owned))
            }

            async fn handle(
                &self,
                #me: &#krate::Addr<#msg>,
                #msg_id: #msg,
                #running: &mut #krate::typed::Running<#self_ty>,
            ) -> ::core::result::Result<(), #krate::ActorError> {
                #[allow(unused_variables)]
                let (#this, #ctx) = #krate::typed::__private::parts(#running, #me);
                #match_body
            }

            fn hibernate(&self, #running: &mut #krate::typed::Running<#self_ty>) {
                #krate::typed::__private::hibernate(#running);
            }

            #terminate_fn
        }

        #handoff

        #errors
    }
}

/// The impl block alone, without the handler attributes (which are not real attributes),
/// and the error.
fn fallback(mut item: ItemImpl, e: Error) -> TokenStream {
    for it in &mut item.items {
        if let ImplItem::Fn(f) = it {
            f.attrs.retain(|a| handler_kind(a).is_none());
        }
    }
    let e = e.to_compile_error();
    quote!(#item #e)
}

/// The name of the actor type: `Counter` in `impl Counter`.
fn actor_ident(self_ty: &Type) -> syn::Result<Ident> {
    if let Type::Path(p) = self_ty {
        if let (None, Some(s)) = (&p.qself, p.path.segments.last()) {
            if !s.arguments.is_empty() {
                return Err(Error::new_spanned(
                    &s.arguments,
                    "an actor cannot be generic: its message enum and handle need concrete types; define a type alias and write `impl Alias`",
                ));
            }
            return Ok(s.ident.clone());
        }
    }
    Err(Error::new_spanned(
        self_ty,
        "`#[actor]` needs an impl of a named type (`impl Counter { ... }`)",
    ))
}

/// Checks `h` against the handlers accepted before it: one hook of each kind, one handler
/// per variant, and no handle method that shadows the handle's own.
fn check_names(h: &Handler, accepted: &[Handler], ty_ident: &Ident) -> syn::Result<()> {
    let name = h.name.to_string();
    match h.kind {
        Kind::Init | Kind::Terminate | Kind::Restored => {
            if let Some(prev) = accepted.iter().find(|p| p.kind == h.kind) {
                return Err(Error::new(
                    h.name.span(),
                    format!(
                        "a second `#[{}]` hook (`{}` is the first): an actor has at most one; merge them or drop the attribute from one",
                        h.kind.attr(),
                        prev.name
                    ),
                ));
            }
            return Ok(());
        }
        Kind::Cast | Kind::Call if HANDLE_METHODS.contains(&name.as_str()) => {
            return Err(Error::new(
                h.name.span(),
                format!(
                    "every generated handle has a `{name}` method; rename this handler (e.g. `{name}_{}`)",
                    ty_ident.to_string().to_snake_case()
                ),
            ));
        }
        _ => {}
    }
    if let Some(prev) = accepted
        .iter()
        .find(|p| p.is_message() && p.variant == h.variant)
    {
        return Err(Error::new(
            h.name.span(),
            format!(
                "`{}` and `{}` both become the message variant `{}`; rename one",
                prev.name, h.name, h.variant
            ),
        ));
    }
    if h.kind == Kind::Info {
        let ty = &h.params[0].ty;
        let key = quote!(#ty).to_string();
        let same = accepted.iter().find(|p| {
            p.kind == Kind::Info && {
                let pty = &p.params[0].ty;
                quote!(#pty).to_string() == key
            }
        });
        if let Some(prev) = same {
            return Err(Error::new_spanned(
                ty,
                format!(
                    "`{}` takes this type too: the message converts from it, so only one `#[info]` handler may; wrap one of them in a newtype",
                    prev.name
                ),
            ));
        }
    }
    Ok(())
}

/// The `tag = N` of `#[cast(tag = N)]` or `#[call(tag = N)]`.
fn handler_tag(a: &Attribute, k: Kind) -> syn::Result<LitInt> {
    let mut tag = None;
    a.parse_nested_meta(|meta| {
        if !meta.path.is_ident("tag") {
            return Err(meta.error(format!(
                "unknown option; expected `#[{}(tag = N)]`, a wire tag for `#[actor(remote)]`",
                k.attr()
            )));
        }
        let lit: LitInt = meta.value()?.parse()?;
        lit.base10_parse::<u32>().map_err(|_| {
            Error::new_spanned(&lit, "a wire tag is a `u32` literal (0 to 4294967295)")
        })?;
        if tag.is_some() {
            return Err(meta.error("a handler has one wire tag"));
        }
        tag = Some(lit);
        Ok(())
    })?;
    tag.ok_or_else(|| {
        Error::new_spanned(
            a,
            format!(
                "expected `#[{0}]`, or `#[{0}(tag = N)]` with `#[actor(remote)]`",
                k.attr()
            ),
        )
    })
}

/// The reply port's name in generated code: mixed-site, so no parameter can meet it.
fn reply_ident() -> Ident {
    Ident::new("reply", Span::mixed_site())
}

/// Reads and strips the handler attribute of `f`; `None` for a plain method.
fn parse_handler(f: &mut ImplItemFn) -> syn::Result<Option<Handler>> {
    let mut kind = None;
    let mut error = None;
    let mut tag = None;
    f.attrs.retain(|a| {
        let Some(k) = handler_kind(a) else {
            return true;
        };
        let args = match (&a.meta, k) {
            (Meta::Path(_), _) => Ok(None),
            (Meta::List(_), Kind::Cast | Kind::Call) => handler_tag(a, k).map(Some),
            (_, Kind::Info) => Err(Error::new_spanned(
                &a.meta,
                "`#[info]` takes no arguments: info messages are local only (timers, watchers), never sent by peers, so they have no wire tag",
            )),
            (_, Kind::Cast | Kind::Call) => Err(Error::new_spanned(
                &a.meta,
                format!("expected `#[{0}]`, or `#[{0}(tag = N)]` with `#[actor(remote)]`", k.attr()),
            )),
            _ => Err(Error::new(
                a.meta
                    .require_path_only()
                    .err()
                    .map_or_else(Span::call_site, |e| e.span()),
                format!("`#[{}]` takes no arguments", k.attr()),
            )),
        };
        match args {
            Err(e) => error = Some(e),
            Ok(_) if kind.is_some() => {
                let prev = kind.map_or("", Kind::attr);
                error = Some(Error::new_spanned(
                    a,
                    format!(
                        "a method is one kind of handler and this one has `#[{prev}]` already; keep one of the two",
                    ),
                ));
            }
            Ok(t) => tag = t,
        }
        kind.get_or_insert(k);
        false
    });
    if let Some(e) = error {
        return Err(e);
    }
    let Some(kind) = kind else { return Ok(None) };
    let sig = &f.sig;
    let name = sig.ident.clone();

    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(Error::new_spanned(
            &sig.generics,
            "a handler cannot be generic: its parameters become fields of the message enum; use a concrete type (an enum, or a `Box<dyn Trait>`)",
        ));
    }
    if sig.variadic.is_some() || sig.abi.is_some() || sig.unsafety.is_some() {
        return Err(Error::new_spanned(
            sig,
            "a handler is a plain (optionally `async`) method",
        ));
    }

    // The receiver.
    let receiver = sig.receiver();
    match (kind, receiver) {
        (Kind::Init, Some(r)) => {
            return Err(Error::new_spanned(
                r,
                format!(
                    "`#[init]` builds the state, so it takes no `self`: write `fn {}(args: A) -> Result<Self, E>` (or `-> Self`)",
                    sig.ident
                ),
            ));
        }
        (Kind::Init, None) => {}
        (_, None) => {
            return Err(Error::new_spanned(
                &sig.ident,
                format!(
                    "a `#[{}]` handler works on the state: take `&mut self` (or `&self`) first",
                    kind.attr()
                ),
            ));
        }
        (_, Some(r)) if r.reference.is_none() => {
            return Err(Error::new_spanned(
                r,
                format!(
                    "a `#[{}]` handler borrows the state, it cannot consume it: write `&mut self` (or `&self`); to stop the process, take `ctx: &Ctx<Self>` and call `ctx.stop()`",
                    kind.attr()
                ),
            ));
        }
        _ => {}
    }

    // The parameters.
    let mut params = Vec::new();
    // The parameters as written, to point at the ones a hook does not take.
    let mut written = Vec::new();
    let mut takes_ctx = false;
    let typed: Vec<_> = sig
        .inputs
        .iter()
        .filter_map(|a| match a {
            FnArg::Typed(t) => Some(t),
            FnArg::Receiver(_) => None,
        })
        .collect();
    for (i, t) in typed.iter().enumerate() {
        if is_ctx(&t.ty) {
            if i + 1 != typed.len() {
                return Err(Error::new_spanned(
                    t,
                    "the `&Ctx<Self>` parameter comes last: move it after the message parameters",
                ));
            }
            takes_ctx = true;
            continue;
        }
        let pname = match &*t.pat {
            Pat::Ident(p) if p.subpat.is_none() && p.by_ref.is_none() => {
                if p.ident == "ctx" {
                    return Err(Error::new_spanned(
                        &p.ident,
                        "`ctx` names the handler's `&Ctx<Self>`; give this parameter another name",
                    ));
                }
                let name = p.ident.to_string();
                match name.trim_start_matches('_') {
                    n if n == name => p.ident.clone(),
                    // `_t`: the generated code uses it, so it is renamed, and mixed-site so
                    // that it cannot meet a user's `t`.
                    "" => Ident::new(&format!("arg{i}"), Span::mixed_site()),
                    n => Ident::new(n, Span::mixed_site()),
                }
            }
            Pat::Wild(_) => Ident::new(&format!("arg{i}"), Span::mixed_site()),
            other => {
                return Err(Error::new_spanned(
                    other,
                    "a handler parameter is a plain name (`key: String`): it becomes a field of the message and a parameter of the handle's method",
                ));
            }
        };
        match &*t.ty {
            Type::Reference(r) => {
                return Err(Error::new_spanned(
                    r,
                    "a message owns what it carries: take an owned type (`String` for `&str`, `Vec<T>` for `&[T]`), not a reference",
                ));
            }
            Type::ImplTrait(i) => {
                return Err(Error::new_spanned(
                    i,
                    "a handler parameter needs a concrete type: it becomes a field of the message enum",
                ));
            }
            _ => {}
        }
        params.push(Param {
            name: pname,
            ty: (*t.ty).clone(),
        });
        written.push(*t);
    }

    // A `#[call]` may take its reply port as its last message parameter and answer later.
    let port = match (kind, params.last()) {
        (Kind::Call, Some(p)) => reply_port_of(&p.ty),
        _ => None,
    };
    let misplaced = params
        .iter()
        .rev()
        .skip(1)
        .find(|p| reply_port_of(&p.ty).is_some());
    if let (Kind::Call, Some(p)) = (kind, misplaced) {
        return Err(Error::new_spanned(
            &p.ty,
            "the reply port is the last message parameter (before `ctx: &Ctx<Self>`)",
        ));
    }
    let deferred = port.is_some();
    if let (Some(_), ReturnType::Type(_, ty)) = (&port, &sig.output) {
        return Err(Error::new_spanned(
            ty,
            "this `#[call]` replies through its `ReplyPort` parameter, so it returns nothing: drop the return type (or drop the port, to reply with the return value)",
        ));
    }
    if deferred {
        params.pop();
        written.pop();
    }

    // Per kind.
    let reply = match (&sig.output, kind) {
        (ReturnType::Default, Kind::Call) if deferred => port,
        (ReturnType::Default, Kind::Call) => {
            return Err(Error::new_spanned(
                &sig.ident,
                format!(
                    "a `#[call]` replies with its return value, and `{name}` returns nothing: add a return type (`-> T`), or make it a `#[cast]`"
                ),
            ));
        }
        (ReturnType::Type(_, ty), Kind::Call) => {
            if let Type::ImplTrait(i) = &**ty {
                return Err(Error::new_spanned(
                    i,
                    "a `#[call]` reply crosses tasks: return a concrete type, not `impl Trait`",
                ));
            }
            Some((**ty).clone())
        }
        (ReturnType::Default, Kind::Init) => {
            return Err(Error::new_spanned(
                &sig.ident,
                "`#[init]` returns the state: add `-> Result<Self, E>` (or `-> Self`)",
            ));
        }
        _ => None,
    };
    let extra = |from: usize| {
        let extra = &written[from..];
        quote!(#(#extra),*)
    };
    match kind {
        Kind::Info if params.is_empty() => {
            return Err(Error::new_spanned(
                &sig.ident,
                "an `#[info]` handler takes the message it handles: add a parameter (`msg: Tick`)",
            ));
        }
        Kind::Info if params.len() > 1 => {
            return Err(Error::new_spanned(
                extra(1),
                "an `#[info]` handler takes one message (then optionally `ctx: &Ctx<Self>`): carry these values in the message type",
            ));
        }
        Kind::Init if params.len() > 1 => {
            return Err(Error::new_spanned(
                extra(1),
                "`#[init]` takes one argument (then optionally `ctx: &Ctx<Self>`): pass a tuple or a struct",
            ));
        }
        Kind::Terminate | Kind::Restored if !params.is_empty() => {
            return Err(Error::new_spanned(
                extra(0),
                format!(
                    "`#[{}]` takes only `&mut self` and optionally `ctx: &Ctx<Self>`: remove this parameter",
                    kind.attr()
                ),
            ));
        }
        _ => {}
    }

    let docs = f
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .cloned()
        .collect();
    let cfgs: Vec<Attribute> = f
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("cfg"))
        .cloned()
        .collect();
    if let (Kind::Init | Kind::Terminate | Kind::Restored, Some(cfg)) = (kind, cfgs.first()) {
        return Err(Error::new_spanned(
            cfg,
            format!(
                "`#[cfg]` on a `#[{}]` hook is not supported: put the `#[cfg]` inside its body",
                kind.attr()
            ),
        ));
    }
    Ok(Some(Handler {
        kind,
        variant: Ident::new(&name.to_string().to_upper_camel_case(), name.span()),
        name,
        params,
        takes_ctx,
        is_async: sig.asyncness.is_some(),
        reply,
        deferred,
        docs,
        cfgs,
        tag,
    }))
}

/// `&Ctx<..>`: the handler's context, by the last segment of its path.
fn is_ctx(ty: &Type) -> bool {
    let Type::Reference(r) = ty else { return false };
    let Type::Path(p) = &*r.elem else {
        return false;
    };
    p.path.segments.last().is_some_and(|s| s.ident == "Ctx")
}

/// Replaces `Self` in a type by the actor's type (`Self::Assoc` by `<Actor>::Assoc`).
struct Unself<'a>(&'a Type);

impl VisitMut for Unself<'_> {
    fn visit_type_mut(&mut self, t: &mut Type) {
        if let Type::Path(p) = t {
            if p.qself.is_none() && p.path.is_ident("Self") {
                *t = self.0.clone();
                return;
            }
            let starts_with_self =
                p.qself.is_none() && p.path.segments.first().is_some_and(|s| s.ident == "Self");
            if starts_with_self {
                let actor = self.0;
                let rest = p.path.segments.iter().skip(1);
                *t = parse_quote!(<#actor>#(::#rest)*);
                return;
            }
        }
        visit_mut::visit_type_mut(self, t);
    }
}
