//! The shared Redis connection against the local stack's Redis and against a server that
//! never answers.

mod metrics;
