//! Benchmarks only: see `benches/`. Run them with `cargo xtask bench`.
