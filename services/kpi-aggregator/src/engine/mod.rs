//! The write path: one writer per tenant applies batches of the tenant's events to its records
//! in Redis (docs/kpi-engine.md).

pub mod flush;
pub mod teams;
pub mod tenant;

use std::collections::HashMap;
use std::sync::Arc;

use mentorstream_redis::{Connection, KeySpace};

use crate::calendar::Calendar;
use crate::signal::{Signal, SignalSink};
use crate::state::keys::TenantKeys;
use crate::target::TargetSource;
use crate::updates::PendingUpdates;
use tenant::TenantWriter;
pub use tenant::{Applied, Input, Watch, WriteError};

/// The writers of the tenants this process owns now.
#[derive(Debug)]
pub struct Engine {
    connection: Connection,
    keys: KeySpace,
    writers: HashMap<String, TenantWriter>,
    signals: Option<Arc<dyn SignalSink>>,
    targets: Option<Arc<dyn TargetSource>>,
    updates: Option<Arc<PendingUpdates>>,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("cannot publish signals: {0}")]
    Signals(String),
    #[error("cannot read the tenant's targets: {0}")]
    Targets(String),
}

impl EngineError {
    /// Errors that retrying cannot cure: the tenant's stored state cannot be read. A value of
    /// a newer version is not one of them: during a rolling upgrade a newer aggregator wrote
    /// it, and this one is about to be replaced — its records wait and are applied by the new.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::Write(WriteError::Malformed { error, .. }) => !error.is_newer(),
            Self::Write(WriteError::Genealogy(..)) => true,
            _ => false,
        }
    }
}

impl Engine {
    pub fn new(connection: Connection, keys: KeySpace) -> Self {
        Self {
            connection,
            keys,
            writers: HashMap::new(),
            signals: None,
            targets: None,
            updates: None,
        }
    }

    /// Where the tenants' targets come from (TargetCrossed).
    pub fn with_targets(mut self, source: Arc<dyn TargetSource>) -> Self {
        self.targets = Some(source);
        self
    }

    /// Where the numbers each batch changed go (kpi.updates and WatchKpis).
    pub fn with_updates(mut self, updates: Arc<PendingUpdates>) -> Self {
        self.updates = Some(updates);
        self
    }

    pub fn with_signals(mut self, sink: Arc<dyn SignalSink>) -> Self {
        self.signals = Some(sink);
        self
    }

    /// Applies a batch of one tenant's records. Signals are published before it returns: the
    /// next batch acknowledges them. On an error the tenant's writer is dropped, and the next
    /// batch takes the tenant over again from what Redis holds.
    pub async fn apply(
        &mut self,
        tenant_id: &str,
        calendar: Calendar,
        inputs: &[Input],
    ) -> Result<Applied, EngineError> {
        let mut applied = self.try_apply(tenant_id, calendar, inputs).await;
        if let Err(EngineError::Write(WriteError::Fenced(_))) = &applied {
            // The tenant moved away and back, or two writers raced: take it over again.
            self.writers.remove(tenant_id);
            applied = self.try_apply(tenant_id, calendar, inputs).await;
        }
        if applied.is_err() {
            self.writers.remove(tenant_id);
        }
        applied
    }

    async fn try_apply(
        &mut self,
        tenant_id: &str,
        calendar: Calendar,
        inputs: &[Input],
    ) -> Result<Applied, EngineError> {
        if !self.writers.contains_key(tenant_id) {
            let keys = TenantKeys::new(&self.keys, tenant_id);
            let (writer, pending) =
                TenantWriter::acquire(&self.connection, keys, tenant_id, calendar).await?;
            self.publish(&pending).await?;
            self.writers.insert(tenant_id.to_owned(), writer);
        }
        let Some(writer) = self.writers.get_mut(tenant_id) else {
            unreachable!("the writer was inserted above");
        };
        let targets = match &self.targets {
            Some(source) => source
                .targets(tenant_id)
                .await
                .map_err(EngineError::Targets)?,
            None => Arc::default(),
        };
        let watch = Watch {
            targets: &targets,
            report: self.updates.is_some(),
        };
        let mut applied = writer.apply(&self.connection, inputs, watch).await?;
        self.publish(&applied.signals).await?;
        if let Some(updates) = &self.updates {
            updates.add(std::mem::take(&mut applied.changed)).await;
        }
        Ok(applied)
    }

    async fn publish(&self, signals: &[Signal]) -> Result<(), EngineError> {
        match &self.signals {
            Some(sink) if !signals.is_empty() => {
                sink.publish(signals).await.map_err(EngineError::Signals)
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::codec::{CodecError, VERSION};

    fn malformed(error: CodecError) -> EngineError {
        EngineError::Write(WriteError::Malformed {
            tenant: "t".into(),
            what: "partner",
            id: "p".into(),
            error,
        })
    }

    #[test]
    fn a_value_of_a_newer_aggregator_is_retried_and_garbage_is_not() {
        assert!(!malformed(CodecError::Version(VERSION + 1)).is_permanent());
        assert!(malformed(CodecError::Version(0)).is_permanent());
        assert!(malformed(CodecError::Empty).is_permanent());
        assert!(!EngineError::Signals("down".into()).is_permanent());
    }
}
