//! The ingest service against the real local stack (make stack-up), one test binary: each
//! test runs the service in-process on port 0 with its own control database, activity topic
//! and Redis key prefix ([`common`]).

mod common;
mod ingest;
mod webhooks;
