//! scopegate-broker (being built).
fn main() {}
