use foundation_actors::prelude::*;

#[derive(Clone)]
struct Machine {
    running: bool,
}

#[actor]
impl Machine {
    #[cast]
    fn stop(&mut self) {
        self.running = false;
    }
}

fn main() {}
