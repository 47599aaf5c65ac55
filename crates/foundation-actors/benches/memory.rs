//! Memory per idle actor (being written).
fn main() {}
