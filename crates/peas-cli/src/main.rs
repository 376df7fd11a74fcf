//! The `peas` operator command.
fn main() {}
