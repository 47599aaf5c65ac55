use foundation_actors::prelude::*;

#[derive(Clone)]
struct Wizard {
    step: u8,
}

#[actor]
impl Wizard {
    #[cast]
    fn step_1(&mut self) {
        self.step = 1;
    }

    #[cast]
    fn step1(&mut self) {
        self.step = 1;
    }
}

fn main() {}
