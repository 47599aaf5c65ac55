//! What every node of a cluster-wide ecosystem starts with: its name, its sizes and the
//! job kinds and reducers it knows, by name.

use std::any::{Any, TypeId};
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A value of a job's output or a reducer's type, while it is not encoded.
pub(crate) type Value = Box<dyn Any + Send>;

/// A job kind's function, its types erased: decodes the input and maps it.
type RunFn = Box<dyn Fn(&[u8]) -> Result<Value, String> + Send + Sync>;

/// A reducer's function, its type erased.
type FoldFn = Box<dyn Fn(Value, Value) -> Result<Value, String> + Send + Sync>;

/// A job kind, its types erased: decodes its input and runs.
pub(crate) struct Kind {
    pub(crate) input: TypeId,
    pub(crate) output: TypeId,
    pub(crate) input_name: &'static str,
    pub(crate) output_name: &'static str,
    pub(crate) run: RunFn,
    pub(crate) encode: fn(&Value) -> Result<Vec<u8>, String>,
}

/// A reducer, its type erased.
pub(crate) struct Reducer {
    pub(crate) ty: TypeId,
    pub(crate) ty_name: &'static str,
    pub(crate) fold: FoldFn,
    pub(crate) encode: fn(&Value) -> Result<Vec<u8>, String>,
    pub(crate) decode: fn(&[u8]) -> Result<Value, String>,
}

fn encode<T: Serialize + 'static>(v: &Value) -> Result<Vec<u8>, String> {
    let v = v
        .downcast_ref::<T>()
        .ok_or_else(|| format!("not a `{}`", std::any::type_name::<T>()))?;
    postcard::to_allocvec(v).map_err(|e| e.to_string())
}

fn decode<T: DeserializeOwned + Send + 'static>(bytes: &[u8]) -> Result<Value, String> {
    postcard::from_bytes::<T>(bytes)
        .map(|v| Box::new(v) as Value)
        .map_err(|e| format!("does not decode as `{}`: {e}", std::any::type_name::<T>()))
}

/// The kinds and reducers of one spec, shared by its workers.
#[derive(Default)]
pub(crate) struct Kinds {
    pub(crate) jobs: HashMap<String, Kind>,
    pub(crate) reducers: HashMap<String, Reducer>,
}

impl Kinds {
    /// Runs a job (`reduce: None`, one item) or a chunk of a map-reduce run (its items
    /// mapped, then folded by the reducer): the encoded output. A panic of the user's
    /// functions is caught by the caller (the worker runs this on a blocking thread).
    pub(crate) fn execute(
        &self,
        kind: &str,
        reduce: Option<&str>,
        items: &[Vec<u8>],
    ) -> Result<Vec<u8>, String> {
        let job = self
            .jobs
            .get(kind)
            .ok_or_else(|| format!("no job kind {kind:?} on this node"))?;
        let Some(reduce) = reduce else {
            let [item] = items else {
                return Err(format!("a job takes one input, not {}", items.len()));
            };
            let out = (job.run)(item)?;
            return (job.encode)(&out);
        };
        let reducer = self
            .reducers
            .get(reduce)
            .ok_or_else(|| format!("no reducer {reduce:?} on this node"))?;
        if reducer.ty != job.output {
            return Err(format!(
                "reducer {reduce:?} folds `{}`, job kind {kind:?} gives `{}`",
                reducer.ty_name, job.output_name
            ));
        }
        let mut acc: Option<Value> = None;
        for item in items {
            let out = (job.run)(item)?;
            acc = Some(match acc {
                None => out,
                Some(a) => (reducer.fold)(a, out)?,
            });
        }
        let acc = acc.ok_or("an empty chunk")?;
        (reducer.encode)(&acc)
    }
}

/// How to build a [`ClusterEcosystem`](super::ClusterEcosystem): start it with the same
/// spec (name, kinds, reducers) on every node.
///
/// Job kinds and reducers are registered **by name** on every node, as a distributed
/// supervisor's child kinds are: a function cannot cross the wire, so only the kind's
/// name and the serde-encoded (postcard) inputs and outputs do.
pub struct WorkSpec {
    pub(crate) name: String,
    pub(crate) workers: usize,
    pub(crate) capacity: usize,
    pub(crate) chunk: usize,
    pub(crate) role: Option<String>,
    pub(crate) roles: BTreeSet<String>,
    pub(crate) respawn: bool,
    pub(crate) report_every: Duration,
    pub(crate) run_timeout: Duration,
    pub(crate) kinds: Kinds,
}

impl fmt::Debug for WorkSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut jobs: Vec<&String> = self.kinds.jobs.keys().collect();
        jobs.sort();
        let mut reducers: Vec<&String> = self.kinds.reducers.keys().collect();
        reducers.sort();
        f.debug_struct("WorkSpec")
            .field("name", &self.name)
            .field("workers", &self.workers)
            .field("capacity", &self.capacity)
            .field("chunk", &self.chunk)
            .field("role", &self.role)
            .field("roles", &self.roles)
            .field("respawn", &self.respawn)
            .field("jobs", &jobs)
            .field("reducers", &reducers)
            .finish_non_exhaustive()
    }
}

impl WorkSpec {
    /// The ecosystem `name`: 2 workers per node, a queue of 256 jobs per node, map-reduce
    /// items sent in chunks of 64, reports to the coordinator every 200 ms, runs waited
    /// for at most 10 minutes, lost workers not replaced.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            workers: 2,
            capacity: 256,
            chunk: 64,
            role: None,
            roles: BTreeSet::new(),
            respawn: false,
            report_every: Duration::from_millis(200),
            run_timeout: Duration::from_secs(600),
            kinds: Kinds::default(),
        }
    }

    /// Registers job kind `name`: `f` maps an `I` to an `O`. It runs on a worker of
    /// whichever node the job goes to (on a blocking thread: it may compute); a panic in
    /// it fails the job (the caller gets a typed error), not the worker. Usable by
    /// [`submit`](super::ClusterEcosystem::submit) and as a map of
    /// [`map_reduce`](super::ClusterEcosystem::map_reduce).
    pub fn job<I, O, F>(mut self, name: impl Into<String>, f: F) -> Self
    where
        I: DeserializeOwned + 'static,
        O: Serialize + Send + 'static,
        F: Fn(I) -> O + Send + Sync + 'static,
    {
        let run = move |bytes: &[u8]| -> Result<Value, String> {
            let input: I = postcard::from_bytes(bytes).map_err(|e| {
                format!(
                    "input does not decode as `{}`: {e}",
                    std::any::type_name::<I>()
                )
            })?;
            Ok(Box::new(f(input)) as Value)
        };
        self.kinds.jobs.insert(
            name.into(),
            Kind {
                input: TypeId::of::<I>(),
                output: TypeId::of::<O>(),
                input_name: std::any::type_name::<I>(),
                output_name: std::any::type_name::<O>(),
                run: Box::new(run),
                encode: encode::<O>,
            },
        );
        self
    }

    /// Registers reducer `name`: `f` folds two `O`s into one. A map-reduce run folds
    /// each chunk's outputs on the node that mapped them, then the chunks' results on the
    /// calling node, in whatever order they come: `f` must be associative and
    /// commutative for the result to be the one a single node gives.
    pub fn reduce<O, F>(mut self, name: impl Into<String>, f: F) -> Self
    where
        O: Serialize + DeserializeOwned + Send + 'static,
        F: Fn(O, O) -> O + Send + Sync + 'static,
    {
        let fold = move |a: Value, b: Value| -> Result<Value, String> {
            let wrong = || format!("not a `{}`", std::any::type_name::<O>());
            let a = a.downcast::<O>().map_err(|_| wrong())?;
            let b = b.downcast::<O>().map_err(|_| wrong())?;
            Ok(Box::new(f(*a, *b)) as Value)
        };
        self.kinds.reducers.insert(
            name.into(),
            Reducer {
                ty: TypeId::of::<O>(),
                ty_name: std::any::type_name::<O>(),
                fold: Box::new(fold),
                encode: encode::<O>,
                decode: decode::<O>,
            },
        );
        self
    }

    /// Workers per node (default 2).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// Jobs each node's queue holds beyond those in its workers' hands (default 256).
    /// A full queue refuses more, and submitters wait ([backpressure](super#routing-and-backpressure)).
    pub fn capacity(mut self, jobs: usize) -> Self {
        self.capacity = jobs;
        self
    }

    /// Items per chunk of a map-reduce run (default 64): a chunk is one job, mapped and
    /// folded on one node.
    pub fn chunk(mut self, items: usize) -> Self {
        self.chunk = items;
        self
    }

    /// Runs workers only on nodes offering `role` ([`offers`](Self::offers)); other
    /// nodes submit but run no jobs.
    pub fn on_role(mut self, role: impl Into<String>) -> Self {
        self.role = Some(role.into());
        self
    }

    /// This node offers `role` (see [`on_role`](Self::on_role)).
    pub fn offers(mut self, role: impl Into<String>) -> Self {
        self.roles.insert(role.into());
        self
    }

    /// Keeps the cluster's worker count when a node goes: the coordinator spreads the
    /// workers of a node that died over the others (and takes them back when nodes
    /// return). Off by default: each node runs its `workers`.
    pub fn respawn_lost_workers(mut self, on: bool) -> Self {
        self.respawn = on;
        self
    }

    /// How often each node reports its load and roles to the coordinator (default
    /// 200 ms), which sends every node the table of workers and loads.
    pub fn report_every(mut self, every: Duration) -> Self {
        self.report_every = every;
        self
    }

    /// How long [`map_reduce`](super::ClusterEcosystem::map_reduce) waits for a run
    /// (default 10 minutes).
    pub fn run_timeout(mut self, timeout: Duration) -> Self {
        self.run_timeout = timeout;
        self
    }

    /// The ecosystem's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this node runs workers: no role asked, or one it offers.
    pub(crate) fn runs_workers(&self) -> bool {
        self.role.as_ref().is_none_or(|r| self.roles.contains(r))
    }
}
