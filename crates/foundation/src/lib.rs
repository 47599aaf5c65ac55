//! # Foundation
//!
//! Erlang/OTP's way of building systems, in Rust: supervised process ecosystems on one
//! machine, extended across a cluster. This is the crate an application depends on.
//!
//! Today it offers the local layer, [`actors`] (re-exported from `foundation-actors`):
//! actors, OTP supervisors with stable addresses, a context that travels with every
//! message, and ecosystems of workers with backpressure. Clustering, registries, pub/sub
//! and caches arrive in their own crates and will be re-exported here.
//!
//! ## Message types
//!
//! Foundation runs on ractor with its `cluster` feature on, which removes ractor's
//! blanket `Message` impl. Foundation wraps every message in its own envelope, so **your
//! message types need no trait impl at all**: any `Send + 'static` type will do.
//!
//! ## Example
//!
//! ```
//! use foundation::prelude::*;
//!
//! #[derive(Clone)]
//! struct Greeter;
//! impl Actor for Greeter {
//!     type Msg = (String, ReplyPort<String>);
//!     type State = ();
//!     type Args = ();
//!     async fn init(&self, _: &Addr<Self::Msg>, _: ()) -> Result<(), ActorError> { Ok(()) }
//!     async fn handle(&self, _: &Addr<Self::Msg>, (who, reply): Self::Msg, _: &mut ()) -> Result<(), ActorError> {
//!         let _ = reply.send(format!("hello, {who}"));
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let greeter = ChildSpec::new("greeter", Greeter, ()).name("greeter");
//! let sup = Supervisor::start(SupervisorSpec::new("app", Strategy::OneForOne).child(greeter)).await?;
//! let greeter = Addr::<(String, ReplyPort<String>)>::whereis("greeter").expect("registered");
//! let hello = greeter.call(|reply| ("world".to_string(), reply)).await?;
//! assert_eq!(hello, "hello, world");
//! sup.shutdown().await;
//! # Ok(()) }
//! ```

pub use foundation_actors as actors;

/// The names an application uses most.
pub mod prelude {
    pub use foundation_actors::prelude::*;
}
