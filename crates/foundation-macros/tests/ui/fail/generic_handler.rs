use foundation_actors::prelude::*;

#[derive(Clone)]
struct Log {
    lines: Vec<String>,
}

#[actor]
impl Log {
    #[cast]
    fn push<T: ToString>(&mut self, line: T) {
        self.lines.push(line.to_string());
    }
}

fn main() {}
