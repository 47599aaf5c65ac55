//! What a distributed supervisor is started with: its name, the kinds of children it can
//! start, its split-brain policy and timing.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use foundation_actors::{ChildSpec, RemoteMessage};
use serde::de::DeserializeOwned;

use super::handoff::{Gate, Handing, Handoff};
use super::strict::Strict;
use super::{ChildName, Fence};
use crate::consistent::ConsistentRegistry;
use crate::placement::{Distribution, Quorum, Rendezvous, Timing};

/// Builds a child's local spec from its arguments' wire form, for an instance whose
/// fence (strict mode's token) and gate (seed, checkpoints, final state) are given.
pub(crate) type Make<M> =
    Arc<dyn Fn(&[u8], &Fence, &Arc<Gate>) -> Result<ChildSpec<M>, postcard::Error> + Send + Sync>;

/// A kind's argument type, to check a child's arguments on the node that starts it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ArgsType {
    /// Its Rust name, for the error.
    pub(crate) name: &'static str,
    /// Whether bytes are the whole encoding of a value of it.
    pub(crate) check: fn(&[u8]) -> Result<(), postcard::Error>,
}

impl ArgsType {
    fn of<A: DeserializeOwned>() -> Self {
        Self {
            name: std::any::type_name::<A>(),
            check: |bytes| decode_args::<A>(bytes).map(drop),
        }
    }
}

/// Decodes a kind's arguments from the whole of `bytes`: arguments of another type (a
/// string for a number, a number for `()`) are refused rather than read as something
/// else, as postcard would read a string's length as a number and ignore the rest.
pub(crate) fn decode_args<A: DeserializeOwned>(bytes: &[u8]) -> Result<A, postcard::Error> {
    match postcard::take_from_bytes(bytes)? {
        (args, []) => Ok(args),
        _ => Err(postcard::Error::DeserializeBadEncoding),
    }
}

/// A distributed supervisor's spec: its name (the same on every node: one logical
/// supervisor), the **kinds** of children it can start, and its policies.
///
/// A child must be startable on any node, so it is not given as a [`ChildSpec`] (a
/// closure cannot cross the wire) but as a *kind*: a factory every node registers under
/// the same name, and arguments that travel ([`serde`]). Register the same kinds on every
/// node; a node that lacks a kind fails to start it there (counted as a failure, so the
/// child moves on and, past its move intensity, is given up).
///
/// # Examples
///
/// ```
/// # use foundation_actors::prelude::*;
/// # #[derive(Debug, RemoteMessage)] enum Msg { #[remote(tag = 1)] Ping(ReplyPort<u64>) }
/// # #[derive(Clone)] struct Counter;
/// # impl Actor for Counter {
/// #     type Msg = Msg; type State = u64; type Args = u64;
/// #     async fn init(&self, _: &Addr<Msg>, n: u64) -> Result<u64, ActorError> { Ok(n) }
/// #     async fn handle(&self, _: &Addr<Msg>, Msg::Ping(p): Msg, n: &mut u64) -> Result<(), ActorError> { let _ = p.send(*n); Ok(()) }
/// # }
/// use std::time::Duration;
/// use foundation_registry::distributed::DistributedSpec;
/// use foundation_registry::placement::{Quorum, Timing};
///
/// let spec = DistributedSpec::new("workers")
///     .kind("counter", |start: u64| ChildSpec::new("counter", Counter, start))
///     .quorum(Quorum::KeepMajority)
///     .timing(Timing { silence: Duration::from_secs(3), margin: Duration::from_secs(1) });
/// ```
pub struct DistributedSpec<M> {
    pub(crate) name: String,
    pub(crate) kinds: HashMap<String, Make<M>>,
    /// Each kind's argument type.
    pub(crate) args: HashMap<String, ArgsType>,
    /// The kinds registered with `handoff_kind`.
    pub(crate) handoff: HashSet<String>,
    pub(crate) checkpoint_replicas: usize,
    pub(crate) quorum: Quorum,
    pub(crate) timing: Timing,
    /// Whether `timing` was set: if not, its silence is the node's.
    pub(crate) timing_set: bool,
    pub(crate) distribution: Arc<dyn Distribution>,
    pub(crate) roles: BTreeSet<String>,
    pub(crate) local_intensity: (u32, Duration),
    pub(crate) sync_every: Duration,
    pub(crate) start_timeout: Duration,
    pub(crate) tombstone_ttl: Duration,
    pub(crate) strict: Option<Strict<M>>,
    pub(crate) probe_closed: bool,
}

impl<M> fmt::Debug for DistributedSpec<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kinds: Vec<&String> = self.kinds.keys().collect();
        kinds.sort();
        f.debug_struct("DistributedSpec")
            .field("name", &self.name)
            .field("kinds", &kinds)
            .field("quorum", &self.quorum)
            .field("timing", &self.timing)
            .field("distribution", &self.distribution)
            .field("roles", &self.roles)
            .field("strict", &self.strict.is_some())
            .finish_non_exhaustive()
    }
}

impl<M: Send + 'static> DistributedSpec<M> {
    /// The supervisor's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A supervisor called `name`, without kinds yet; [`Quorum::KeepMajority`], a timing
    /// of the node's silence (3 s by default) plus a 1 s margin, [`Rendezvous`] placement.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            kinds: HashMap::new(),
            args: HashMap::new(),
            handoff: HashSet::new(),
            checkpoint_replicas: 2,
            quorum: Quorum::default(),
            timing: Timing {
                silence: Duration::from_secs(3),
                margin: Duration::from_secs(1),
            },
            timing_set: false,
            distribution: Arc::new(Rendezvous),
            roles: BTreeSet::new(),
            local_intensity: (3, Duration::from_secs(5)),
            sync_every: Duration::from_secs(1),
            start_timeout: Duration::from_secs(10),
            tombstone_ttl: Duration::from_secs(3600),
            strict: None,
            probe_closed: true,
        }
    }

    /// Registers the kind `name`: `make` builds the local spec of a child of that kind
    /// from its arguments, on whichever node runs it (once per instance started there;
    /// the local supervisor restarts it from that spec). The spec's restart type is
    /// replaced by the child's [`ChildPlacement::restart`](crate::placement::ChildPlacement::restart).
    #[must_use]
    pub fn kind<A, F>(mut self, name: impl Into<String>, make: F) -> Self
    where
        A: DeserializeOwned,
        F: Fn(A) -> ChildSpec<M> + Send + Sync + 'static,
    {
        let make: Make<M> =
            Arc::new(move |bytes: &[u8], _: &Fence, _: &Arc<Gate>| decode_args(bytes).map(&make));
        let name = name.into();
        self.args.insert(name.clone(), ArgsType::of::<A>());
        self.handoff.remove(&name);
        self.kinds.insert(name, make);
        self
    }

    /// As [`kind`](Self::kind), and `make` is also given the instance's [`Fence`]: in
    /// [strict mode](Self::strict) a singleton's child reads its lease's fencing token
    /// there, to pass with its writes. Outside strict mode (or for a child that is not a
    /// singleton) the fence reads `None`.
    #[must_use]
    pub fn kind_fenced<A, F>(mut self, name: impl Into<String>, make: F) -> Self
    where
        A: DeserializeOwned,
        F: Fn(A, Fence) -> ChildSpec<M> + Send + Sync + 'static,
    {
        let make: Make<M> = Arc::new(move |bytes: &[u8], fence: &Fence, _: &Arc<Gate>| {
            decode_args(bytes).map(|args| make(args, fence.clone()))
        });
        let name = name.into();
        self.args.insert(name.clone(), ArgsType::of::<A>());
        self.handoff.remove(&name);
        self.kinds.insert(name, make);
        self
    }

    /// Registers the kind `name` for a child that implements [`Handoff`]: `make` builds
    /// the actor and its `init` arguments from the child's arguments, on whichever node
    /// runs it. Such a child's state moves with it on a planned move
    /// ([`migrate`](super::DistributedSupervisor::migrate), a rebalance, a graceful
    /// shutdown of its node), with the messages sent to it by id meanwhile held and
    /// delivered in order; and a restart or failover starts from its last
    /// [`checkpoint`](super::checkpoint). See the [module docs](super#handoff).
    #[must_use]
    pub fn handoff_kind<A, H, F>(mut self, name: impl Into<String>, make: F) -> Self
    where
        A: DeserializeOwned,
        H: Handoff<Msg = M> + Clone,
        H::Args: Clone + Sync,
        F: Fn(A) -> (H, H::Args) + Send + Sync + 'static,
    {
        let name: String = name.into();
        let id = name.clone();
        let make: Make<M> = Arc::new(move |bytes: &[u8], _: &Fence, gate: &Arc<Gate>| {
            let (actor, args) = make(decode_args(bytes)?);
            let actor = Handing {
                actor,
                gate: gate.clone(),
            };
            Ok(ChildSpec::new(id.clone(), actor, args))
        });
        self.args.insert(name.clone(), ArgsType::of::<A>());
        self.handoff.insert(name.clone());
        self.kinds.insert(name, make);
        self
    }

    /// To how many other nodes each [`checkpoint`](super::checkpoint) is copied (in
    /// memory): the first `k` nodes after the child's own in its distribution's order,
    /// so that the node a failover picks holds it while views agree. Default 2; 0 keeps
    /// checkpoints on the child's node only (they then survive crashes, not its node's
    /// death).
    #[must_use]
    pub fn checkpoint_replicas(mut self, k: usize) -> Self {
        self.checkpoint_replicas = k;
        self
    }

    /// The split-brain policy. Default [`Quorum::KeepMajority`].
    #[must_use]
    pub fn quorum(mut self, quorum: Quorum) -> Self {
        self.quorum = quorum;
        self
    }

    /// The silence limit and margin of split-brain decisions; see the timing argument in
    /// [`placement`](crate::placement) for the margin. Unset, the silence is the node's
    /// ([`Node::silence`](foundation_cluster::node::Node::silence)) and the margin 1 s. A
    /// silence shorter than the node's is raised to it when the supervisor starts (with a
    /// warning): the winning side of a split must not start children before the losing
    /// side's failure detector has even noticed.
    #[must_use]
    pub fn timing(mut self, timing: Timing) -> Self {
        self.timing = timing;
        self.timing_set = true;
        self
    }

    /// Where children go. Default [`Rendezvous`].
    #[must_use]
    pub fn distribution(mut self, distribution: impl Distribution + 'static) -> Self {
        self.distribution = Arc::new(distribution);
        self
    }

    /// This node offers `role` to children restricted to it
    /// ([`ChildPlacement::on_role`](crate::placement::ChildPlacement::on_role)).
    #[must_use]
    pub fn role(mut self, role: impl Into<String>) -> Self {
        self.roles.insert(role.into());
        self
    }

    /// The restart intensity of each instance's local supervisor: past it, the instance
    /// has failed on this node, and the placement decides what follows (another node,
    /// within the child's move intensity). Default 3 restarts in 5 s.
    #[must_use]
    pub fn local_intensity(mut self, max_restarts: u32, period: Duration) -> Self {
        self.local_intensity = (max_restarts, period);
        self
    }

    /// How often each node tells each peer how many of the peer's changes it has (the
    /// peer sends those after). Changes are sent at once; this only bounds how long a
    /// lost one stays missing. Default 1 s.
    #[must_use]
    pub fn sync_every(mut self, every: Duration) -> Self {
        self.sync_every = every.max(Duration::from_millis(1));
        self
    }

    /// How long a removed child's record (its tombstone) is kept, so that a peer that
    /// has not heard of the removal yet learns it instead of bringing the child back.
    /// Default 1 hour; a node cut off for longer that still runs the child brings it back
    /// when it returns.
    #[must_use]
    pub fn tombstone_ttl(mut self, ttl: Duration) -> Self {
        self.tombstone_ttl = ttl;
        self
    }

    /// Whether a member whose connection closed is probed: if its address then refuses
    /// a connection, no process listens there any more, and its instances start on other
    /// nodes at once, without waiting the silence limit and margin (a `kill -9`, a
    /// crash: failover in milliseconds). Default on.
    ///
    /// The limit: a firewall that *rejects* (TCP reset or ICMP port unreachable, as
    /// `iptables -j REJECT` does) makes a live node look gone, and its instances then run
    /// beside the new ones until it notices the cut itself (its lanes close too, so
    /// usually at once). Turn this off where such rules may cut the cluster, or use
    /// strict mode for children that must never have two instances.
    #[must_use]
    pub fn probe_closed(mut self, on: bool) -> Self {
        self.probe_closed = on;
        self
    }

    /// How long [`start_child`](super::DistributedSupervisor::start_child) and
    /// [`terminate_child`](super::DistributedSupervisor::terminate_child) wait for the
    /// child to answer by name (or be gone). Default 10 s.
    #[must_use]
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }
}

impl<M: RemoteMessage> DistributedSpec<M> {
    /// Strict mode: every [`Singleton`](crate::placement::Placement::Singleton) child's
    /// instance runs only while its node holds the child's lease in `leases` (under
    /// [`ChildName::unique`]), and its [`Fence`] carries the lease's fencing token.
    ///
    /// An instance starts once the lease is granted (a node that cannot get it, because
    /// the old holder's lease has not run out or there is no quorum, tries again
    /// shortly), and is stopped when its lease is lost. The lease is released when the
    /// instance stops. At most one instance holds the lease at any time, even when a node
    /// is paused longer than the margin; a paused instance may still run for a moment
    /// after its resume, and a store that checks the fencing token refuses its writes.
    /// See `docs/placement.md`, "Strict mode".
    ///
    /// Start `leases` on every node, with the lease it should have
    /// ([`ConsistentOptions::lease`](crate::consistent::ConsistentOptions::lease)), before
    /// the supervisor. Give it
    /// [`on_lost(OnConflict::Unregister)`](crate::consistent::ConsistentOptions::on_lost):
    /// the supervisor then stops an instance whose lease is lost through its local
    /// supervisor, gracefully (its `terminate` runs). With the registry's default
    /// ([`OnConflict::Stop`](crate::OnConflict::Stop)) the registry stops the process
    /// itself at the same moment, and a `Permanent` child's local supervisor may restart
    /// it for the instant before the supervisor shuts it down. A failover waits for the
    /// lease to run out as well as for the quorum timing.
    #[must_use]
    pub fn strict(mut self, leases: ConsistentRegistry<ChildName, M>) -> Self {
        self.strict = Some(Strict {
            leases: Box::new(leases),
            acquire_timeout: Duration::from_secs(1),
        });
        self
    }
}
