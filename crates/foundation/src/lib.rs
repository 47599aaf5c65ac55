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
//! message types need no trait impl at all**: any `Send + 'static` type will do. Messages
//! that cross nodes derive [`RemoteMessage`](actors::RemoteMessage), with an explicit wire
//! tag per variant.
//!
//! ## Example
//!
//! An actor derived with [`actor`](macro@actors::actor): state, and one method per
//! message, as a `GenServer`. The macro generates the message enum, a typed handle
//! (`GreeterRef`) and the spawn functions.
//!
//! ```
//! use foundation::prelude::*;
//!
//! #[derive(Clone, Default)]
//! struct Greeter { greeted: u64 }
//!
//! #[actor]
//! impl Greeter {
//!     #[call]
//!     fn greet(&mut self, who: String) -> String {
//!         self.greeted += 1;
//!         format!("hello, {who}")
//!     }
//!
//!     #[call]
//!     fn greeted(&self) -> u64 { self.greeted }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let greeter = Greeter::child_spec(Greeter::default()).name("greeter");
//! let sup = Supervisor::start(SupervisorSpec::new("app", Strategy::OneForOne).child(greeter)).await?;
//! let greeter = GreeterRef::whereis("greeter").expect("registered");
//! assert_eq!(greeter.greet("world".into()).await?, "hello, world");
//! assert_eq!(greeter.greeted().await?, 1);
//! sup.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Actors can also be written by hand, implementing [`Actor`](actors::Actor) with an
//! explicit message enum: see [`actors`].

pub use foundation_actors as actors;

/// The names an application uses most.
pub mod prelude {
    pub use foundation_actors::prelude::*;
}
