//! Work across the cluster: an [`Ecosystem`](foundation_actors::Ecosystem) whose workers
//! run on every node, and map-reduce over it.
//!
//! Start a [`ClusterEcosystem`] of the same name, with the same [`WorkSpec`] (job kinds
//! and reducers registered by name), on every node: together they are one ecosystem.
//!
//! # Shape
//!
//! ```text
//! node a                      node b                      node c
//! ├── workers (n) + queue     ├── workers (n) + queue     ├── workers (n) + queue
//! ├── receiver $work/<name>   ├── receiver                ├── receiver
//! └── coordinator (singleton of the ecosystem's distributed supervisor, on one node)
//! ```
//!
//! - **Workers**: each node runs `n` workers ([`WorkSpec::workers`]) pulling from one
//!   bounded queue of its own ([`WorkSpec::capacity`]): a local
//!   [`Ecosystem`](foundation_actors::Ecosystem) under its own supervisor. With
//!   [`WorkSpec::on_role`], only nodes that [offer](WorkSpec::offers) the role run
//!   workers; the others submit.
//! - **The coordinator** is a singleton of the ecosystem's own
//!   [`DistributedSupervisor`](crate::distributed::DistributedSupervisor): every node
//!   declares it, one runs it, and it fails over with the supervisor's guarantees when
//!   its node dies. Every node reports its roles and load to it
//!   ([`WorkSpec::report_every`]); it decides how many workers each node runs and sends
//!   every node the table of workers and loads. It holds no job: a run never waits for
//!   it, and a failover loses nothing (the next reports rebuild its table).
//! - **Jobs** are a kind's name and postcard-encoded input: a function cannot cross the
//!   wire, so kinds are registered on every node ([`WorkSpec::job`],
//!   [`WorkSpec::reduce`]), as a distributed supervisor's child kinds are. The node that
//!   submits a job keeps it until its result comes back (its *ledger*).
//!
//! # Routing and backpressure
//!
//! A job goes to the **least-loaded node with room**, as the submitting node sees it:
//! per worker, its own jobs sent there (known exactly) or the node's last reported load,
//! whichever is larger. A node has room while that load is below its queue's capacity
//! plus its workers. When no node has room, [`ClusterEcosystem::submit`] waits
//! (`submit_timeout` at most a while) and [`ClusterEcosystem::try_submit`] returns
//! [`SubmitError::Full`]: the queues' bounds reach the producer. Several producers may
//! fill a queue between two reports: a node whose queue is full refuses the job back
//! to its sender, which sends it elsewhere or waits (counted in
//! [`WorkStats::refused`]).
//!
//! # What a node's death does (at-least-once)
//!
//! When a node dies (kill -9, power loss; seen as the membership's `NodeDown`) or its
//! part shuts down, every job other nodes had sent it and not seen done is **sent
//! again**, ahead of new ones, to the nodes left. A job may then run twice (its first
//! run may have finished, its result lost with the node, or still on the way): jobs are
//! **at-least-once**, and should be idempotent. The submitter takes the first result of
//! each job and drops the others ([`WorkStats::duplicates`]). Jobs a node submitted die
//! with it (no one is left to take their results). With
//! [`WorkSpec::respawn_lost_workers`], the coordinator gives the dead node's workers to
//! the nodes left, keeping the cluster's worker count (and takes them back when nodes
//! join). The coordinator's own node dying changes nothing for running jobs: each node
//! keeps the last table until the new coordinator's comes.
//!
//! # Map-reduce
//!
//! [`ClusterEcosystem::map_reduce`] cuts the items into chunks ([`WorkSpec::chunk`]);
//! each chunk is one job, mapped and folded on the node it goes to; the calling node
//! folds the chunks' results as they come. A chunk counts once however many times it
//! ran, so **no item is lost or counted twice** when a node dies mid-run, and with a
//! reducer that is associative and commutative the result equals a single node's.
//! [`MapReduce::progress`] says how many items are done, in all and per node.
//!
//! # Limits
//!
//! - A job or chunk's map runs on a blocking thread of its node; a panic fails the job
//!   (the caller gets [`JobError::Failed`] / [`MapReduceError::Failed`]), not the worker.
//! - Re-sending relies on the membership seeing the node go: a node that is alive but
//!   partitioned away keeps its jobs until it is declared down (the node's silence),
//!   and then they may run on both sides.
//! - The ledger is in the submitting node's memory; map-reduce items are held there
//!   until the run ends.
//!
//! # Examples
//!
//! One node here (a node is an OS process); on several, the same code runs on each and
//! the chunks spread over them.
//!
//! ```
//! use foundation_cluster::node::{Node, NodeConfig};
//! use foundation_registry::work::{ClusterEcosystem, WorkSpec};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let node = Node::start(NodeConfig::new("a", "cookie").listen("127.0.0.1:0".parse()?)).await?;
//! let spec = WorkSpec::new("squares")
//!     .job("square", |n: u64| n * n)
//!     .reduce("sum", |a: u64, b: u64| a + b)
//!     .workers(2);
//! let eco = ClusterEcosystem::start(&node, spec).await?;
//!
//! // One job, on the least-loaded node.
//! let job = eco.submit::<u64, u64>("square", &7).await?;
//! assert_eq!(job.result().await?, 49);
//!
//! // Map-reduce over the cluster.
//! let sum: Option<u64> = eco.map_reduce("square", 1..=1000_u64, "sum").await?;
//! assert_eq!(sum, Some((1..=1000_u64).map(|n| n * n).sum()));
//!
//! // With progress.
//! let run = eco.start_map_reduce::<u64, u64>("square", 1..=100_u64, "sum")?;
//! let total = run.progress().total;
//! assert_eq!((total, run.wait().await?), (100, Some(338_350)));
//!
//! eco.shutdown().await;
//! node.shutdown().await;
//! # Ok(()) }
//! ```

mod dispatch;
mod error;
/// The ecosystem's decoders of peer bytes, for the fuzz targets (feature `fuzzing`).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) mod fuzzing;
mod run;
mod runtime;
mod spec;
mod wire;

pub use error::{JobError, MapReduceError, StartError, SubmitError};
pub use run::{MapReduce, Progress, Tracker};
pub use runtime::{ClusterEcosystem, Job, NodeLoad, WorkStats};
pub use spec::WorkSpec;
