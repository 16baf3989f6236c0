//! Integration tests of the whole system, against the real local stack.
//!
//! One test binary per crate, the files below its modules: on 2 cores every extra binary
//! is another link of the whole dependency tree, and another ~90 MB on disk.

mod callbacks;
mod clients;
mod dashboard;
mod erase;
mod faults;
mod impact;
mod isolation;
mod metrics;
mod openapi;
mod system;
mod truth;
