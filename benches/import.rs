//! Import throughput benchmark (filled in with the store).
fn main() {}
