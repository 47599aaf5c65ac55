use foundation_actors::prelude::*;

#[derive(Clone, Default)]
struct Jobs {
    done: u64,
}

#[actor]
impl Jobs {
    // Replies through the port later, and also returns a value: which is the reply?
    #[call]
    fn wait(&mut self, reply: ReplyPort<u64>) -> u64 {
        let _ = reply;
        self.done
    }
}

fn main() {}
