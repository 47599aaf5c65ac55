//! Reaching and naming processes through a registry: Elixir's `{:via, Registry, {r, key}}`.

use std::borrow::Borrow;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::time::Duration;

use foundation_actors::{
    Actor, Addr, ChildSpec, DEFAULT_CALL_TIMEOUT, ReplyPort, Supervisor, SupervisorError, spawn,
};

use super::error::{StartError, ViaCallError, ViaCastError};
use super::registry::Registry;

impl<K, M, V> Registry<K, M, V>
where
    K: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
    M: Send + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Sends `msg` to the process registered under `key` ([`Registry::whereis`]), as
    /// `GenServer.cast({:via, Registry, {r, key}}, msg)`.
    ///
    /// # Errors
    ///
    /// [`ViaCastError::NotRegistered`] if no live process is registered under `key`,
    /// [`ViaCastError::Send`] if the process refused the message. The message is handed
    /// back either way.
    pub fn cast<Q>(&self, key: &Q, msg: M) -> Result<(), ViaCastError<M>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + fmt::Debug + ?Sized,
    {
        match self.whereis(key) {
            Some(addr) => addr.cast(msg).map_err(|source| ViaCastError::Send {
                key: format!("{key:?}"),
                source,
            }),
            None => Err(ViaCastError::NotRegistered {
                key: format!("{key:?}"),
                msg,
            }),
        }
    }

    /// Sends a copy of `msg` to every live process registered under `key`, oldest entry
    /// first: a broadcast to a group. Returns how many accepted it; the others had stopped
    /// meanwhile or were restarting with a full backlog. A process registered twice under
    /// `key` gets two copies.
    pub fn cast_all<Q>(&self, key: &Q, msg: M) -> usize
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        M: Clone,
    {
        let mut sent = 0;
        self.dispatch(key, |entries| {
            for (addr, _) in entries {
                if addr.cast(msg.clone()).is_ok() {
                    sent += 1;
                }
            }
        });
        sent
    }

    /// Calls the process registered under `key`, as `GenServer.call({:via, ..}, req)`:
    /// sends the request `build` makes around a reply port and waits for the reply for at
    /// most [`DEFAULT_CALL_TIMEOUT`] (or the context's deadline). The name is resolved when
    /// `call` is called, not when the future is first polled.
    ///
    /// # Errors
    ///
    /// [`ViaCallError::NotRegistered`] (nothing was sent), or [`ViaCallError::Call`] with
    /// the call's own error.
    ///
    /// # Cancel safety
    ///
    /// As [`Addr::call`]: dropping the future abandons the reply.
    pub fn call<Q, R, F>(&self, key: &Q, build: F) -> impl Future<Output = Result<R, ViaCallError>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + fmt::Debug + ?Sized,
        F: FnOnce(ReplyPort<R>) -> M,
        R: Send + 'static,
    {
        self.call_timeout(key, build, DEFAULT_CALL_TIMEOUT)
    }

    /// As [`Registry::call`], waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`Registry::call`].
    pub fn call_timeout<Q, R, F>(
        &self,
        key: &Q,
        build: F,
        timeout: Duration,
    ) -> impl Future<Output = Result<R, ViaCallError>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + fmt::Debug + ?Sized,
        F: FnOnce(ReplyPort<R>) -> M,
        R: Send + 'static,
    {
        // Resolved now, so the future does not borrow the key.
        let addr = self.whereis(key);
        let key = format!("{key:?}");
        async move {
            let Some(addr) = addr else {
                return Err(ViaCallError::NotRegistered { key });
            };
            addr.call_timeout(build, timeout)
                .await
                .map_err(|source| ViaCallError::Call { key, source })
        }
    }

    /// Starts `spec` under `sup` registered under `key` with `value`, as a child spec
    /// with `name: {:via, Registry, {r, key}}`. The name is registered before the child
    /// starts (messages sent to it meanwhile are held for it), stays through its restarts,
    /// and goes when it stops for good or fails to start.
    ///
    /// For a [`DynamicSupervisor`](foundation_actors::DynamicSupervisor), pass its
    /// [`handle`](foundation_actors::DynamicSupervisor::handle).
    ///
    /// # Errors
    ///
    /// [`StartError::Register`] if the name cannot be registered (nothing is started);
    /// [`StartError::Start`] if the supervisor could not start the child.
    pub async fn start_child(
        &self,
        sup: &Supervisor,
        key: K,
        value: V,
        spec: ChildSpec<M>,
    ) -> Result<Addr<M>, StartError<K, M>> {
        let addr = spec.addr();
        self.register(key.clone(), &addr, value)?;
        match sup.start_child(spec).await {
            Ok(addr) => Ok(addr),
            Err(e) => {
                // The supervisor stops the address on most failures, which removes the
                // name; not when it is not running at all, so remove it here too.
                self.unregister(&key, &addr);
                Err(StartError::Start(e))
            }
        }
    }

    /// Spawns `actor` without a supervisor and registers it under `key` with `value`.
    ///
    /// Unlike [`Registry::start_child`], the address exists only once the actor has
    /// started, so the name is registered just after its `init`; if it is taken by then,
    /// the new actor is stopped again and the error names the holder.
    ///
    /// # Errors
    ///
    /// [`StartError::Start`] if the actor failed to start, [`StartError::Register`] if the
    /// name could not be registered.
    pub async fn spawn<A>(
        &self,
        key: K,
        value: V,
        actor: A,
        args: A::Args,
    ) -> Result<Addr<M>, StartError<K, M>>
    where
        A: Actor<Msg = M>,
    {
        let addr = spawn(actor, args)
            .await
            .map_err(|e| StartError::Start(SupervisorError::Spawn(e)))?;
        if let Err(e) = self.register(key, &addr, value) {
            addr.stop(Some("its name is taken".into()));
            return Err(e.into());
        }
        Ok(addr)
    }
}
