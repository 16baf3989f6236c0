//! Integration tests of the notifier, against the real local stack.
//!
//! One test binary per crate, the files below its modules: on 2 cores every extra binary
//! is another link of the whole dependency tree, and another ~90 MB on disk.

mod common;
mod delivery;
mod digest;
mod preferences;
mod processes;
mod prune;
mod sessions;
mod signals;
