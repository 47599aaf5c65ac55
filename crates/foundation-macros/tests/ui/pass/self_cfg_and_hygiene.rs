// Patterns that must expand cleanly: `Self` in handler types, `#[cfg]` on handlers,
// parameters named like the macro's own locals, `_` parameters, an `Ok` in scope that
// is not `Result::Ok`, and an actor written by a `macro_rules!`.
use foundation_actors::prelude::*;

#[allow(dead_code)]
#[derive(Debug, PartialEq)]
enum Health {
    Ok,
    Degraded,
}
#[allow(unused_imports)]
use Health::*;

#[derive(Clone, Debug, Default, PartialEq)]
struct Counter {
    total: u64,
}

#[actor]
impl Counter {
    #[call]
    fn snapshot(&self) -> Self {
        self.clone()
    }

    #[cast]
    fn replace(&mut self, new: Self) {
        *self = new;
    }

    #[call]
    fn many(&self, reply: u64, msg: u64, sup: u64, args: u64, arg1: u64, _: u64, _t: u64) -> Vec<Self> {
        let _ = (reply, msg, sup, args, arg1);
        vec![self.clone()]
    }

    #[cfg(any())]
    #[cast]
    fn compiled_out(&mut self, n: NoSuchType) {}

    #[call]
    fn health(&self) -> Health {
        Health::Ok
    }
}

macro_rules! counter_actor {
    ($name:ident, $method:ident) => {
        #[derive(Clone, Default)]
        struct $name {
            n: u64,
        }

        #[actor]
        impl $name {
            #[cast]
            fn $method(&mut self, by: u64) {
                self.n += by;
            }

            #[call]
            fn get(&self) -> u64 {
                self.n
            }
        }
    };
}

counter_actor!(Made, bump);

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let sup = DynamicSupervisor::start("s", None).await.unwrap();
    let c = Counter::spawn_supervised(&sup, Counter::default()).await.unwrap();
    c.replace(Counter { total: 7 }).await.unwrap();
    assert_eq!(c.snapshot().await.unwrap(), Counter { total: 7 });
    assert_eq!(c.many(1, 2, 3, 4, 5, 6, 7).await.unwrap().len(), 1);
    assert_eq!(c.health().await.unwrap(), Health::Ok);
    let m = Made::spawn(Made::default()).await.unwrap();
    m.bump(2).await.unwrap();
    assert_eq!(m.get().await.unwrap(), 2);
    sup.shutdown().await;
}
