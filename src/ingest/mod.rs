//! (being written)
//!
//! Sources of raw alert bytes. Each source hands bytes plus their origin to the pipeline; none of them
//! parses alerts itself.

pub mod file;
