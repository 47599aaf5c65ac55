use foundation_actors::prelude::*;

struct Cell<T> {
    value: T,
}

#[actor]
impl<T: Send + 'static> Cell<T> {
    #[cast]
    fn set(&mut self, value: T) {
        self.value = value;
    }
}

fn main() {}
