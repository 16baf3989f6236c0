//! The shared Redis connection against the local stack's Redis and against a server that
//! never answers.

mod lease;
mod metrics;

use mentorstream_config::Config;
use mentorstream_redis::{Connection, connect};

/// A connection to the local stack's Redis, as the defaults configure it.
fn local_redis() -> Connection {
    let config = Config::load(None).expect("defaults");
    connect(&config.redis).expect("connection")
}
