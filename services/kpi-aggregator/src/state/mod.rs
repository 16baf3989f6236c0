//! The KPI state as typed Rust: counters by bucket, partners' facts and the rules that fold
//! events into them, membership over time and the genealogy in memory
//! (docs/kpi-engine.md). Pure: no IO, so every rule is tested without Redis or Kafka.

pub mod codec;
pub mod counts;
pub mod genealogy;
pub mod group;
pub mod input;
pub mod keys;
pub mod membership;
pub mod partner;
pub mod rank;
pub mod subject;
