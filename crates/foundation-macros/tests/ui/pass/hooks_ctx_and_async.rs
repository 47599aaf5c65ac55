use std::time::Duration;

use foundation_actors::prelude::*;

struct Ticker {
    ticks: u32,
    stopped: bool,
}

#[derive(Clone)]
struct TickerArgs {
    start: u32,
}

struct Tick;

struct Reset;

#[derive(Debug)]
struct Refused;

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("refused")
    }
}

impl std::error::Error for Refused {}

#[actor]
impl Ticker {
    #[init]
    async fn start(args: TickerArgs, ctx: &Ctx<Self>) -> Result<Self, Refused> {
        ctx.send_after(Duration::from_secs(3600), Tick);
        Ok(Self {
            ticks: args.start,
            stopped: false,
        })
    }

    #[info]
    fn tick(&mut self, _tick: Tick) {
        self.ticks += 1;
    }

    #[cast]
    async fn bump(&mut self, by: u32) -> Result<(), Refused> {
        tokio::task::yield_now().await;
        self.ticks = self.ticks.checked_add(by).ok_or(Refused)?;
        Ok(())
    }

    #[cast]
    fn quit(&mut self, ctx: &Ctx<Self>) {
        ctx.stop();
    }

    #[call]
    async fn ticks(&self, ctx: &Ctx<Self>) -> (u32, bool) {
        let _me: TickerRef = ctx.me();
        (self.ticks, self.stopped)
    }

    #[terminate]
    async fn finish(&mut self, _ctx: &Ctx<Self>) {
        self.stopped = true;
    }

    // A second `#[info]`, after handlers without parameters.
    #[info]
    fn reset(&mut self, _reset: Reset) {
        self.ticks = 0;
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let t = Ticker::spawn(TickerArgs { start: 1 }).await.unwrap();
    t.bump(2).await.unwrap();
    assert_eq!(t.ticks().await.unwrap(), (3, false));
    t.addr().cast(Tick.into()).unwrap();
    t.addr().cast(Reset.into()).unwrap();
    t.quit().await.unwrap();
    let _spec: ChildSpec<TickerMsg> = Ticker::child_spec(TickerArgs { start: 0 });
}
