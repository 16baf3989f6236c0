//! The KPI state in Redis (docs/kpi-state.md): shard keys, the shard script, and the two
//! stages that keep every number exact.
//!
//! [`Store::apply`] runs stage 1 (one script call per partner shard of a batch, refused at or
//! below the shard's offset watermark) and then forwards the outbox entries those calls left,
//! hop by hop, until none is pending: the batch's effects on sponsors, teams up the genealogy
//! and the tenant are then applied, exactly once, and its offsets may be committed.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use mentorstream_redis::{Cmd, Connection, KeySpace, RedisError, Value, cmd, pipe};

use crate::calendar::{Bucket, DAY_RETENTION, MONTH_RETENTION, WEEK_RETENTION};
use crate::fold::{Operation, ShardEvent};
use crate::metric::Counter;
use crate::signal::{Signal, SignalSink};
use crate::target::{Target, TargetSource};

const SHARD_SCRIPT: &str = include_str!("shard.lua");

/// The target of outbox entries that are signals, published rather than forwarded.
const SIGNAL_TARGET: &str = "signal";

/// The sum of one field over hashes of one shard.
const SUM_FIELD: &str = "local total = 0 \
                         for i = 1, #KEYS do \
                           total = total + tonumber(redis.call('HGET', KEYS[i], ARGV[1]) or '0') \
                         end \
                         return total";

/// A mentee's goals and their progress, in one call on their shard.
const GOAL_STATE: &str = "return { redis.call('HGET', KEYS[1], 'goals') or false, \
                                   redis.call('HGETALL', KEYS[2]) }";

/// Idle partners announced per round trip of a sweep.
const SWEEP_BATCH: usize = 1000;

/// Removes members whose score is still the one given (a newer activity keeps them indexed).
const UNINDEX_IF_UNCHANGED: &str = "for i = 1, #ARGV, 2 do \
                                      if tonumber(redis.call('ZSCORE', KEYS[1], ARGV[i])) \
                                         == tonumber(ARGV[i + 1]) then \
                                        redis.call('ZREM', KEYS[1], ARGV[i]) \
                                      end \
                                    end \
                                    return 0";

/// Forwarding hops of one apply before it gives up: deeper than any genealogy, so reaching it
/// means the sponsor data has a cycle.
const MAX_HOPS: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("Redis is unavailable: {0}")]
    Redis(#[from] RedisError),
    #[error("unexpected answer from the shard script: {0}")]
    Answer(String),
    #[error("team roll-ups did not end after {MAX_HOPS} hops: the genealogy has a cycle")]
    Cycle,
    #[error("cannot publish signals: {0}")]
    Signals(String),
    #[error("cannot read the tenant's targets: {0}")]
    Targets(String),
    #[error("more than {0} partners")]
    TooLarge(usize),
}

/// Events of one topic-partition for one partner shard, in offset order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerBatch {
    pub tenant_id: String,
    pub partner_id: String,
    /// `<topic>/<partition>`: the watermark this batch advances.
    pub source: String,
    pub events: Vec<ShardEvent>,
}

/// Whose counters to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject<'a> {
    Partner(&'a str),
    /// A partner and their whole downline.
    Team(&'a str),
    /// A mentor's group: its mentees' contributions while assigned.
    Group(&'a str),
    Tenant,
}

/// A partner's lifetime facts, as ranks (occurred_at micros, source, id), for GetJourney.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JourneyFacts {
    /// (rank, sponsor id) of the earliest enrolment.
    pub enrolment: Option<(String, String)>,
    /// Rank of the earliest order placed.
    pub first_sale: Option<String>,
    /// (level, name, rank) of each level first reached, by level.
    pub ranks: Vec<(u32, String, String)>,
    /// Membership events in rank order: (rank, assigned, group id, mentor id).
    pub membership: Vec<(String, bool, String, String)>,
}

impl JourneyFacts {
    /// The group a contribution of the event of `rank` counts for: the shard script's rule
    /// (membership events up to that moment in rank order; an unassignment ends only the
    /// membership it names).
    pub fn group_at(&self, rank: &str) -> Option<&str> {
        let time = rank.get(..20)?;
        let mut current = None;
        for (event_rank, assigned, group_id, _) in &self.membership {
            if event_rank.get(..20).is_some_and(|at| at > time) {
                break;
            }
            if *assigned {
                current = Some(group_id.as_str());
            } else if current == Some(group_id.as_str()) {
                current = None;
            }
        }
        current
    }

    pub fn is_empty(&self) -> bool {
        self.enrolment.is_none()
            && self.first_sale.is_none()
            && self.ranks.is_empty()
            && self.membership.is_empty()
    }
}

/// A subject, owned.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OwnedSubject {
    Partner(String),
    Team(String),
    Group(String),
    Tenant,
}

impl OwnedSubject {
    pub fn as_subject(&self) -> Subject<'_> {
        match self {
            Self::Partner(id) => Subject::Partner(id),
            Self::Team(id) => Subject::Team(id),
            Self::Group(id) => Subject::Group(id),
            Self::Tenant => Subject::Tenant,
        }
    }
}

/// A number that an applied batch changed: a subject's counters in one bucket.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Changed {
    /// Shared with the outbox entries it came from: a batch of a deep genealogy changes
    /// hundreds of thousands of keys of one tenant.
    pub tenant_id: Arc<str>,
    pub subject: OwnedSubject,
    pub bucket: Bucket,
}

/// Who a group is now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupMembers {
    /// The mentor, once the group has had a mentee.
    pub mentor_id: Option<String>,
    /// Current mentees, sorted.
    pub mentee_ids: Vec<String>,
}

/// An entry of a shard's outbox, to be applied to another shard. The body goes back to the
/// script as it came (`target \x1d kind \x1d rank \x1d changes`, changes being
/// `bucket \x1f counter \x1f amount` joined by `\x1e`): the forwarder only needs the target,
/// so it does not take entries apart. An entry is identified by its source and sequence.
#[derive(Debug, Clone)]
struct OutboxEntry {
    tenant_id: Arc<str>,
    source: Arc<str>,
    seq: u64,
    body: String,
    /// Where the target ends in `body`.
    target_end: usize,
}

impl OutboxEntry {
    fn target(&self) -> &str {
        &self.body[..self.target_end]
    }

    /// Kind, rank (of the causing event, for personal and tenant entries) and changes.
    fn parts(&self) -> (&str, &str, &str) {
        let mut rest = self.body[self.target_end..].splitn(4, '\u{1d}').skip(1);
        (
            rest.next().unwrap_or_default(),
            rest.next().unwrap_or_default(),
            rest.next().unwrap_or_default(),
        )
    }

    fn id(&self) -> (Arc<str>, u64) {
        (self.source.clone(), self.seq)
    }
}

/// Where the shards of one key namespace live.
#[derive(Clone)]
pub struct Store {
    connection: Connection,
    keys: KeySpace,
    script_sha: String,
    signals: Option<Arc<dyn SignalSink>>,
    targets: Option<Arc<dyn TargetSource>>,
    updates: Option<Arc<crate::updates::PendingUpdates>>,
}

/// Per tenant, its targets as the shard script reads them.
type TargetSpecs = BTreeMap<String, String>;

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl Store {
    pub fn new(connection: Connection, keys: KeySpace) -> Self {
        Self {
            connection,
            keys,
            script_sha: mentorstream_redis::Script::new(SHARD_SCRIPT)
                .get_hash()
                .to_owned(),
            signals: None,
            targets: None,
            updates: None,
        }
    }

    /// Reports what every applied batch changed to `updates` (for kpi.updates.v1), waiting
    /// while it is full.
    #[must_use]
    pub fn with_updates(mut self, updates: Arc<crate::updates::PendingUpdates>) -> Self {
        self.updates = Some(updates);
        self
    }

    /// Watches the targets of `source` for TargetCrossed (without one, none is watched).
    #[must_use]
    pub fn with_targets(mut self, source: Arc<dyn TargetSource>) -> Self {
        self.targets = Some(source);
        self
    }

    /// Publishes the signals the shards decide to `sink` (without one they are dropped).
    #[must_use]
    pub fn with_signals(mut self, sink: Arc<dyn SignalSink>) -> Self {
        self.signals = Some(sink);
        self
    }

    /// The hash tag of a partner's shard.
    pub fn partner_shard(&self, tenant_id: &str, partner_id: &str) -> String {
        self.keys.hash_tag(&[tenant_id, "p", partner_id])
    }

    /// The hash tag of a group's shard.
    pub fn group_shard(&self, tenant_id: &str, group_id: &str) -> String {
        self.keys.hash_tag(&[tenant_id, "g", group_id])
    }

    /// The hash tag of the tenant's shard.
    pub fn tenant_shard(&self, tenant_id: &str) -> String {
        self.keys.hash_tag(&[tenant_id])
    }

    /// Applies `batches` and everything they cause, exactly once.
    pub async fn apply(&self, batches: &[PartnerBatch]) -> Result<(), StoreError> {
        let targets = self.target_specs(batches).await?;
        let pending = self.apply_events(batches, &targets).await?;
        self.forward(pending, &targets, None).await
    }

    /// What a consumer that crashes part-way has done, for fault tests: stage 1, then
    /// `hops` forwarding hops, the last of them applied at its targets but not trimmed from
    /// its sources. A redelivery of the batch must finish the work without counting twice.
    #[doc(hidden)]
    pub async fn apply_interrupted(
        &self,
        batches: &[PartnerBatch],
        hops: usize,
    ) -> Result<(), StoreError> {
        let targets = self.target_specs(batches).await?;
        let pending = self.apply_events(batches, &targets).await?;
        if hops == 0 {
            return Ok(());
        }
        self.forward(pending, &targets, Some(hops)).await
    }

    /// The script's spelling of the targets of every tenant of `batches`.
    async fn target_specs(&self, batches: &[PartnerBatch]) -> Result<TargetSpecs, StoreError> {
        let mut specs = TargetSpecs::new();
        let Some(source) = &self.targets else {
            return Ok(specs);
        };
        for batch in batches {
            if specs.contains_key(&batch.tenant_id) {
                continue;
            }
            let targets = source
                .targets(&batch.tenant_id)
                .await
                .map_err(StoreError::Targets)?;
            let spec: Vec<String> = targets.iter().map(Target::script_spec).collect();
            specs.insert(batch.tenant_id.clone(), spec.join("\u{1e}"));
        }
        Ok(specs)
    }

    async fn apply_events(
        &self,
        batches: &[PartnerBatch],
        targets: &TargetSpecs,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let mut outboxes = Vec::new();
        let mut seen = HashSet::new();
        let mut pending: Vec<(&PartnerBatch, i64)> = batches
            .iter()
            .filter(|batch| !batch.events.is_empty())
            .map(|batch| (batch, i64::MIN))
            .collect();
        while !pending.is_empty() {
            let calls: Vec<Cmd> = pending
                .iter()
                .map(|(batch, watermark)| self.events_call(batch, *watermark, targets))
                .collect();
            let answers = self.invoke(calls).await?;
            let mut refused = Vec::new();
            for ((batch, _), answer) in pending.into_iter().zip(answers) {
                let shard: Arc<str> = self
                    .partner_shard(&batch.tenant_id, &batch.partner_id)
                    .into();
                let (applied, watermark, entries) =
                    parse_answer(answer, &Arc::from(batch.tenant_id.as_str()), &shard)?;
                outboxes.extend(entries.into_iter().filter(|entry| seen.insert(entry.id())));
                // Refused: the shard applied this partition up to `watermark` before (a
                // redelivery). What lies beyond it is sent again.
                if !applied && batch.events.iter().any(|event| event.offset > watermark) {
                    refused.push((batch, watermark));
                }
            }
            pending = refused;
        }
        Ok(outboxes)
    }

    /// Stage 2: applies outbox entries to their targets, hop by hop, until no target has
    /// anything pending; then trims everything it forwarded from the sources, deepest hop
    /// first (or, for fault tests, stops before trimming after `crash_after` hops).
    ///
    /// Trimming only at the end keeps every entry of an unfinished chain reachable from the
    /// batch's own partner shards: a redelivery is refused there but gets their pending
    /// entries, forwards them again (targets skip what they applied) and gets the targets'
    /// pending entries in turn, down to the end of the chain.
    async fn forward(
        &self,
        mut pending: Vec<OutboxEntry>,
        targets: &TargetSpecs,
        crash_after: Option<usize>,
    ) -> Result<(), StoreError> {
        // What each hop forwarded, by (source, sequence): enough to trim it at the end. The
        // entries' bodies are dropped once applied; a batch of a deep genealogy forwards
        // hundreds of thousands of them.
        let mut hops: Vec<Vec<(Arc<str>, u64)>> = Vec::new();
        let mut forwarded: HashSet<(Arc<str>, u64)> = HashSet::new();
        while !pending.is_empty() {
            if hops.len() == MAX_HOPS {
                return Err(StoreError::Cycle);
            }
            self.publish_signals(&pending).await?;
            let mut by_target: HashMap<(&str, &str), Vec<&OutboxEntry>> = HashMap::new();
            for entry in pending
                .iter()
                .filter(|entry| entry.target() != SIGNAL_TARGET)
            {
                by_target
                    .entry((&entry.tenant_id, entry.target()))
                    .or_default()
                    .push(entry);
            }
            let by_target: Vec<((&str, &str), Vec<&OutboxEntry>)> = by_target.into_iter().collect();
            let calls: Vec<Cmd> = by_target
                .iter()
                .map(|((tenant_id, target), entries)| {
                    self.forwarded_call(tenant_id, target, entries, targets)
                })
                .collect();
            let answers = self.invoke(calls).await?;
            forwarded.extend(pending.iter().map(OutboxEntry::id));
            let mut next = Vec::new();
            let mut seen = HashSet::new();
            for (((tenant_id, target), _), answer) in by_target.iter().zip(answers) {
                let (_, _, entries) =
                    parse_answer(answer, &Arc::from(*tenant_id), &Arc::from(*target))?;
                next.extend(
                    entries.into_iter().filter(|entry| {
                        !forwarded.contains(&entry.id()) && seen.insert(entry.id())
                    }),
                );
            }
            // Reported hop by hop, as each is applied: one hop of a batch changes a few
            // thousand targets, a whole chain of a deep genealogy up to hundreds of thousands.
            if let Some(updates) = &self.updates {
                updates.add(self.changed(&pending)).await;
            }
            hops.push(pending.iter().map(OutboxEntry::id).collect());
            if crash_after == Some(hops.len()) {
                return Ok(());
            }
            pending = next;
        }
        if hops.is_empty() {
            return Ok(());
        }
        let mut trims = Vec::new();
        for hop in hops.iter().rev() {
            let mut by_source: HashMap<&str, Vec<u64>> = HashMap::new();
            for (source, seq) in hop {
                by_source.entry(source).or_default().push(*seq);
            }
            for (source, seqs) in by_source {
                let mut trim = cmd("HDEL");
                trim.arg(format!("{source}:out")).arg(seqs);
                trims.push(trim);
            }
        }
        self.connection.each(trims).await?;
        Ok(())
    }

    /// The (subject, bucket) numbers the forwarded `entries` changed: a partner's personal
    /// changes (its tenant entry) change the partner, its team and the tenant; a team entry
    /// changes the target's team; group and member entries change the group.
    fn changed(&self, entries: &[OutboxEntry]) -> Vec<Changed> {
        let mut changed = BTreeSet::new();
        for entry in entries {
            let partner_prefix = self.partner_shard(&entry.tenant_id, "");
            let partner_of = |shard: &str| shard_id(shard, &partner_prefix).map(str::to_owned);
            let group_prefix = self.group_shard(&entry.tenant_id, "");
            let group_of = |shard: &str| shard_id(shard, &group_prefix).map(str::to_owned);
            let (kind, _, changes) = entry.parts();
            let subjects = match kind {
                "tenant" => partner_of(&entry.source).map_or_else(Vec::new, |partner| {
                    vec![
                        OwnedSubject::Partner(partner.clone()),
                        OwnedSubject::Team(partner),
                        OwnedSubject::Tenant,
                    ]
                }),
                "team" => partner_of(entry.target())
                    .map(OwnedSubject::Team)
                    .into_iter()
                    .collect(),
                "group" | "member" => group_of(entry.target())
                    .map(OwnedSubject::Group)
                    .into_iter()
                    .collect(),
                _ => Vec::new(),
            };
            let buckets: BTreeSet<Bucket> = if kind == "member" {
                BTreeSet::from([Bucket::Lifetime])
            } else {
                changes
                    .split('\u{1e}')
                    .filter_map(|change| Bucket::parse(change.split('\u{1f}').next()?))
                    .collect()
            };
            for subject in subjects {
                for bucket in &buckets {
                    changed.insert(Changed {
                        tenant_id: entry.tenant_id.clone(),
                        subject: subject.clone(),
                        bucket: *bucket,
                    });
                }
            }
        }
        changed.into_iter().collect()
    }

    /// Announces Inactive, once per episode, for the tenant's partners whose latest activity is
    /// at or before `now - after`; returns how many. An episode is named by its latest
    /// activity: a partner is indexed again only when an event moves that forward, so a late
    /// older event starts no new episode. A crash between publishing and unindexing publishes
    /// the same ids again.
    pub async fn sweep_inactive(
        &self,
        tenant_id: &str,
        now: chrono::DateTime<chrono::Utc>,
        after: chrono::Duration,
    ) -> Result<usize, StoreError> {
        let Some(sink) = &self.signals else {
            return Ok(0);
        };
        let key = format!("{}:idle", self.tenant_shard(tenant_id));
        let cut_off = (now - after).timestamp_micros();
        let mut announced = 0;
        loop {
            let idle = self.due(&key, cut_off).await?;
            if idle.is_empty() {
                return Ok(announced);
            }
            let signals: Vec<Signal> = idle
                .iter()
                .filter_map(|(partner_id, micros)| {
                    Signal::inactive(tenant_id, partner_id, *micros, after, now)
                })
                .collect();
            sink.publish(&signals).await.map_err(StoreError::Signals)?;
            self.unindex(&key, &idle).await?;
            announced += signals.len();
            if idle.len() < SWEEP_BATCH {
                return Ok(announced);
            }
        }
    }

    /// Up to a sweep batch of the members of the sorted set `key` scored at most `until`.
    async fn due(&self, key: &str, until: i64) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(cmd("ZRANGE")
            .arg(key)
            .arg("-inf")
            .arg(until)
            .arg("BYSCORE")
            .arg("LIMIT")
            .arg(0)
            .arg(SWEEP_BATCH)
            .arg("WITHSCORES")
            .query_async(&mut self.connection.clone())
            .await?)
    }

    /// Removes `members` from the sorted set `key` unless their score changed meanwhile.
    async fn unindex(&self, key: &str, members: &[(String, i64)]) -> Result<(), StoreError> {
        let mut unindex = cmd("EVAL");
        unindex.arg(UNINDEX_IF_UNCHANGED).arg(1).arg(key);
        for (member, score) in members {
            unindex.arg(member).arg(score);
        }
        let _: i64 = unindex.query_async(&mut self.connection.clone()).await?;
        Ok(())
    }

    /// The progress of a mentee's goals (their counter and value), for those of `goal_ids` the
    /// shard knows, in request order.
    pub async fn goal_progress(
        &self,
        tenant_id: &str,
        mentee_id: &str,
        goal_ids: &[String],
    ) -> Result<Vec<(String, Counter, i64)>, StoreError> {
        let shard = self.partner_shard(tenant_id, mentee_id);
        let (goals, progress): (Option<String>, BTreeMap<String, i64>) = cmd("EVAL")
            .arg(GOAL_STATE)
            .arg(2)
            .arg(format!("{shard}:f"))
            .arg(format!("{shard}:gp"))
            .query_async(&mut self.connection.clone())
            .await?;
        // id \x1f plan \x1f counter \x1f ..., goals joined by \x1d
        let counters: BTreeMap<&str, Counter> = goals
            .as_deref()
            .unwrap_or_default()
            .split('\u{1d}')
            .filter_map(|spec| {
                let mut fields = spec.split('\u{1f}');
                let id = fields.next()?;
                let counter = Counter::from_field(fields.nth(1)?)?;
                Some((id, counter))
            })
            .collect();
        Ok(goal_ids
            .iter()
            .filter_map(|goal_id| {
                let counter = *counters.get(goal_id.as_str())?;
                Some((
                    goal_id.clone(),
                    counter,
                    progress.get(goal_id).copied().unwrap_or(0),
                ))
            })
            .collect())
    }

    /// Announces GoalMissed for the tenant's goals due at or before `now` whose progress is
    /// short of their target; returns how many. Each due goal is unindexed after it was
    /// looked at (unless set again meanwhile); a crash in between announces the same ids again.
    pub async fn sweep_goals(
        &self,
        tenant_id: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<usize, StoreError> {
        let Some(sink) = &self.signals else {
            return Ok(0);
        };
        let key = format!("{}:goals", self.tenant_shard(tenant_id));
        let mut announced = 0;
        loop {
            let due = self.due(&key, now.timestamp_micros()).await?;
            if due.is_empty() {
                return Ok(announced);
            }
            let reads = due
                .iter()
                .map(|(member, _)| {
                    let mentee = member.split('\u{1c}').next().unwrap_or_default();
                    let shard = self.partner_shard(tenant_id, mentee);
                    let mut read = cmd("EVAL");
                    read.arg(GOAL_STATE)
                        .arg(2)
                        .arg(format!("{shard}:f"))
                        .arg(format!("{shard}:gp"));
                    read
                })
                .collect();
            let mut signals = Vec::new();
            for ((member, _), state) in due.iter().zip(self.connection.each(reads).await?) {
                let (goals, progress): (Option<String>, BTreeMap<String, i64>) =
                    mentorstream_redis::from_value(state)?;
                let Some((mentee, goal_id)) = member.split_once('\u{1c}') else {
                    continue;
                };
                if let Some(signal) =
                    Signal::goal_missed(tenant_id, mentee, goal_id, goals.as_deref(), &progress)
                {
                    signals.push(signal);
                }
            }
            sink.publish(&signals).await.map_err(StoreError::Signals)?;
            self.unindex(&key, &due).await?;
            announced += signals.len();
            if due.len() < SWEEP_BATCH {
                return Ok(announced);
            }
        }
    }

    /// Publishes the signal entries among `entries`; they are trimmed with the rest of their
    /// hop, so a crash before the trim publishes them again, with the same ids.
    async fn publish_signals(&self, entries: &[OutboxEntry]) -> Result<(), StoreError> {
        let Some(sink) = &self.signals else {
            return Ok(());
        };
        let mut signals = Vec::new();
        // In sequence order per source (an outbox answers in hash order): a later signal of
        // the same cause is the corrected one.
        let mut announced: Vec<&OutboxEntry> = entries
            .iter()
            .filter(|entry| entry.target() == SIGNAL_TARGET)
            .collect();
        announced.sort_by(|a, b| (&a.source, a.seq).cmp(&(&b.source, b.seq)));
        for entry in announced {
            let partner_prefix = self.partner_shard(&entry.tenant_id, "");
            let partner_id = shard_id(&entry.source, &partner_prefix).unwrap_or_default();
            let (kind, rank, fact) = entry.parts();
            match Signal::from_outbox(
                &entry.tenant_id,
                partner_id,
                kind,
                rank,
                fact,
                chrono::Utc::now(),
            ) {
                Some(signal) => signals.push(signal),
                None => tracing::error!(?entry, "dropping a malformed signal entry"),
            }
        }
        if signals.is_empty() {
            return Ok(());
        }
        sink.publish(&signals).await.map_err(StoreError::Signals)
    }

    /// Sends script calls in one round trip, loading the script first if Redis lost it.
    async fn invoke(&self, calls: Vec<Cmd>) -> Result<Vec<Value>, StoreError> {
        match self.connection.each(calls.clone()).await {
            Ok(values) => Ok(values),
            Err(error) if mentorstream_redis::is_no_script(&error) => {
                // Redis restarted or failed over (on a cluster SCRIPT LOAD reaches every
                // node). Calls that went through before are refused by their watermarks when
                // sent again.
                let _: String = cmd("SCRIPT")
                    .arg("LOAD")
                    .arg(SHARD_SCRIPT)
                    .query_async(&mut self.connection.clone())
                    .await?;
                Ok(self.connection.each(calls).await?)
            }
            Err(error) => Err(error.into()),
        }
    }

    fn script_call(&self, shard: &str, tenant_id: &str, mode: &str, targets: &TargetSpecs) -> Cmd {
        let mut call = cmd("EVALSHA");
        call.arg(&self.script_sha).arg(1).arg(shard).arg(mode);
        for retention in [DAY_RETENTION, WEEK_RETENTION, MONTH_RETENTION] {
            call.arg(retention.as_secs());
        }
        let partner_prefix = self.partner_shard(tenant_id, "");
        call.arg(partner_prefix.trim_end_matches('}'))
            .arg(self.tenant_shard(tenant_id))
            .arg(targets.get(tenant_id).map_or("", String::as_str));
        call
    }

    fn events_call(&self, batch: &PartnerBatch, watermark: i64, targets: &TargetSpecs) -> Cmd {
        let events: Vec<&ShardEvent> = batch
            .events
            .iter()
            .filter(|event| event.offset > watermark)
            .collect();
        let first = events.first().map_or(0, |event| event.offset);
        let last = events.last().map_or(0, |event| event.offset);
        let shard = self.partner_shard(&batch.tenant_id, &batch.partner_id);
        let mut call = self.script_call(&shard, &batch.tenant_id, "events", targets);
        call.arg(&batch.source).arg(first).arg(last);
        for event in events {
            call.arg(&event.id);
            for bucket in &event.buckets {
                call.arg(bucket.to_string());
            }
            call.arg(event.operations.len());
            for operation in &event.operations {
                match operation {
                    Operation::First {
                        fact,
                        rank,
                        amounts,
                    } => {
                        call.arg("first").arg(fact).arg(rank).arg(amounts.len());
                        for (counter, amount) in amounts {
                            call.arg(counter.field()).arg(amount);
                        }
                    }
                    Operation::Order {
                        order_id,
                        rank,
                        volume,
                    } => {
                        call.arg("order").arg(order_id).arg(rank).arg(volume);
                    }
                    Operation::Refund { order_id, volume } => {
                        call.arg("refund").arg(order_id).arg(volume);
                    }
                    Operation::Enrol { sponsor_id, rank } => {
                        call.arg("enrol").arg(sponsor_id).arg(rank);
                    }
                    Operation::Active { rank } => {
                        call.arg("active").arg(rank);
                    }
                    Operation::Goal {
                        goal_id,
                        plan_id,
                        counter,
                        target,
                        start,
                        due,
                        rank,
                    } => {
                        call.arg("goal")
                            .arg(goal_id)
                            .arg(plan_id)
                            .arg(counter.field())
                            .arg(target)
                            .arg(start)
                            .arg(due)
                            .arg(rank);
                    }
                    Operation::Rank { level, name, rank } => {
                        call.arg("rank").arg(level).arg(name).arg(rank);
                    }
                    Operation::Member {
                        rank,
                        change,
                        group_id,
                        mentor_id,
                    } => {
                        call.arg("member")
                            .arg(rank)
                            .arg(change.as_str())
                            .arg(group_id)
                            .arg(mentor_id);
                    }
                }
            }
        }
        call
    }

    fn forwarded_call(
        &self,
        tenant_id: &str,
        target: &str,
        entries: &[&OutboxEntry],
        targets: &TargetSpecs,
    ) -> Cmd {
        let mut call = self.script_call(target, tenant_id, "forwarded", targets);
        // In sequence order per source: the target's watermark per source only moves up.
        let mut entries = entries.to_vec();
        entries.sort_by(|a, b| (&a.source, a.seq).cmp(&(&b.source, b.seq)));
        for entry in entries {
            call.arg(&*entry.source).arg(entry.seq).arg(&entry.body);
        }
        call
    }

    /// A subject's counters in `buckets`, summed (a rolling window is many days).
    pub async fn counters(
        &self,
        tenant_id: &str,
        subject: Subject<'_>,
        buckets: &[Bucket],
    ) -> Result<BTreeMap<Counter, i64>, StoreError> {
        let mut totals = BTreeMap::new();
        for counters in self.counters_by_bucket(tenant_id, subject, buckets).await? {
            for (counter, value) in counters {
                *totals.entry(counter).or_default() += value;
            }
        }
        totals.retain(|_, value| *value != 0);
        Ok(totals)
    }

    /// One page of the tenant-wide ranking of partners by `counter` summed over `buckets`:
    /// best first, ties by partner id, partners at zero left out. Returns the page and
    /// whether more follow.
    pub async fn leaderboard(
        &self,
        tenant_id: &str,
        counter: Counter,
        buckets: &[Bucket],
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<(String, i64)>, bool), StoreError> {
        let shard = self.tenant_shard(tenant_id);
        let keys: Vec<String> = buckets
            .iter()
            .map(|bucket| format!("{shard}:lb:{}:{bucket}", counter.field()))
            .collect();
        let mut connection = self.connection.clone();
        // Scores are negated values: ascending order is best first, ties by member.
        let ranked: Vec<(String, f64)> = if let [key] = keys.as_slice() {
            let last = offset.saturating_add(limit);
            cmd("ZRANGE")
                .arg(key)
                .arg(offset)
                .arg(last)
                .arg("WITHSCORES")
                .query_async(&mut connection)
                .await?
        } else {
            let all: Vec<(String, f64)> = cmd("ZUNION")
                .arg(keys.len())
                .arg(&keys)
                .arg("WITHSCORES")
                .query_async(&mut connection)
                .await?;
            all.into_iter()
                .filter(|(_, score)| *score != 0.0)
                .skip(offset)
                .take(limit.saturating_add(1))
                .collect()
        };
        let more = ranked.len() > limit;
        #[allow(clippy::cast_possible_truncation)] // scores are sums of integer counters
        let page = ranked
            .into_iter()
            .take(limit)
            .map(|(partner, score)| (partner, -score as i64))
            .collect();
        Ok((page, more))
    }

    /// A partner's enrolment, first sale, ranks and membership events.
    pub async fn journey_facts(
        &self,
        tenant_id: &str,
        partner_id: &str,
    ) -> Result<JourneyFacts, StoreError> {
        let shard = self.partner_shard(tenant_id, partner_id);
        let (facts, membership): (BTreeMap<String, String>, BTreeMap<String, String>) = pipe()
            .cmd("HGETALL")
            .arg(format!("{shard}:f"))
            .cmd("HGETALL")
            .arg(format!("{shard}:mem"))
            .query_async(&mut self.connection.clone())
            .await?;
        let first_field = |fact: &str| fact.split('\u{1f}').next().unwrap_or_default().to_owned();
        let mut journey = JourneyFacts {
            enrolment: facts.get("enrol").map(|fact| {
                let mut fields = fact.split('\u{1f}');
                let rank = fields.next().unwrap_or_default().to_owned();
                (rank, fields.next().unwrap_or_default().to_owned())
            }),
            first_sale: facts.get("sale").map(|fact| first_field(fact)),
            ..JourneyFacts::default()
        };
        for (field, fact) in &facts {
            if let Some(level) = field
                .strip_prefix("rank\u{1e}")
                .and_then(|level| level.parse::<u32>().ok())
            {
                let name = facts
                    .get(&format!("rname\u{1e}{level}"))
                    .cloned()
                    .unwrap_or_default();
                journey.ranks.push((level, name, first_field(fact)));
            }
        }
        journey.ranks.sort();
        // BTreeMap order is rank order.
        for (rank, event) in membership {
            let mut fields = event.split('\u{1f}');
            let assigned = fields.next() == Some("assign");
            let group_id = fields.next().unwrap_or_default().to_owned();
            let mentor_id = fields.next().unwrap_or_default().to_owned();
            journey
                .membership
                .push((rank, assigned, group_id, mentor_id));
        }
        Ok(journey)
    }

    /// The contributions logged for a partner's `counter` in `bucket` (lifetime: every day
    /// still logged): (rank of the contributing event, amount), in rank order.
    pub async fn logged_contributions(
        &self,
        tenant_id: &str,
        partner_id: &str,
        counter: Counter,
        bucket: Bucket,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let shard = self.partner_shard(tenant_id, partner_id);
        let days: Vec<String> = match bucket.days() {
            Some(days) => days
                .into_iter()
                .map(|day| Bucket::Day(day).to_string())
                .collect(),
            None => {
                cmd("SMEMBERS")
                    .arg(format!("{shard}:lgd"))
                    .query_async(&mut self.connection.clone())
                    .await?
            }
        };
        let mut pipeline = pipe();
        for day in &days {
            pipeline.cmd("HGETALL").arg(format!("{shard}:lg:{day}"));
        }
        let logs: Vec<BTreeMap<String, i64>> =
            pipeline.query_async(&mut self.connection.clone()).await?;
        let mut contributions: Vec<(String, i64)> = logs
            .into_iter()
            .flatten()
            .filter_map(|(field, amount)| {
                // rank \x1f week \x1f month \x1f counter
                let mut parts = field.rsplitn(4, '\u{1f}');
                let logged = parts.next()?;
                let _month = parts.next()?;
                let _week = parts.next()?;
                let rank = parts.next()?;
                (logged == counter.field() && amount != 0).then(|| (rank.to_owned(), amount))
            })
            .collect();
        contributions.sort();
        Ok(contributions)
    }

    /// Everyone who was ever a member of a group.
    pub async fn group_members_ever(
        &self,
        tenant_id: &str,
        group_id: &str,
    ) -> Result<Vec<String>, StoreError> {
        let mut members: Vec<String> = cmd("SMEMBERS")
            .arg(format!(
                "{}:everyone",
                self.group_shard(tenant_id, group_id)
            ))
            .query_async(&mut self.connection.clone())
            .await?;
        members.sort();
        Ok(members)
    }

    /// A partner and everyone below them in the genealogy, root first; fails with
    /// [`StoreError::TooLarge`] beyond `limit` partners.
    pub async fn downline(
        &self,
        tenant_id: &str,
        root: &str,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let mut all = vec![root.to_owned()];
        let mut seen: BTreeSet<String> = BTreeSet::from([root.to_owned()]);
        let mut frontier = vec![root.to_owned()];
        while !frontier.is_empty() {
            let reads = frontier
                .iter()
                .map(|partner| {
                    let mut read = cmd("HKEYS");
                    read.arg(format!(
                        "{}:children",
                        self.partner_shard(tenant_id, partner)
                    ));
                    read
                })
                .collect();
            let mut next = Vec::new();
            for children in self.connection.each(reads).await? {
                let children: Vec<String> = mentorstream_redis::from_value(children)?;
                for child in children {
                    // The genealogy is a tree; a cycle in bad data must not loop.
                    if seen.insert(child.clone()) {
                        next.push(child);
                    }
                }
            }
            all.extend(next.iter().cloned());
            if all.len() > limit {
                return Err(StoreError::TooLarge(limit));
            }
            frontier = next;
        }
        Ok(all)
    }

    /// Every group of the tenant and its mentor.
    pub async fn groups(&self, tenant_id: &str) -> Result<BTreeMap<String, String>, StoreError> {
        Ok(cmd("HGETALL")
            .arg(format!("{}:groups", self.tenant_shard(tenant_id)))
            .query_async(&mut self.connection.clone())
            .await?)
    }

    /// `subjects` ranked by `counter` summed over `buckets`: best first, ties by id, zeros
    /// left out. One command per subject, each in its own shard.
    pub async fn rank(
        &self,
        tenant_id: &str,
        subjects: &[(String, OwnedSubject)],
        counter: Counter,
        buckets: &[Bucket],
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let sums = subjects
            .iter()
            .map(|(_, subject)| {
                let (shard, kind) = match subject.as_subject() {
                    Subject::Partner(partner) => (self.partner_shard(tenant_id, partner), "c"),
                    Subject::Team(partner) => (self.partner_shard(tenant_id, partner), "t"),
                    Subject::Group(group) => (self.group_shard(tenant_id, group), "c"),
                    Subject::Tenant => (self.tenant_shard(tenant_id), "c"),
                };
                let mut sum = cmd("EVAL");
                sum.arg(SUM_FIELD).arg(buckets.len());
                for bucket in buckets {
                    sum.arg(format!("{shard}:{kind}:{bucket}"));
                }
                sum.arg(counter.field());
                sum
            })
            .collect();
        let mut ranked: Vec<(String, i64)> = Vec::with_capacity(subjects.len());
        for ((id, _), total) in subjects.iter().zip(self.connection.each(sums).await?) {
            let total: i64 = mentorstream_redis::from_value(total)?;
            if total != 0 {
                ranked.push((id.clone(), total));
            }
        }
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Ok(ranked)
    }

    /// A group's mentor and current mentees.
    pub async fn group_members(
        &self,
        tenant_id: &str,
        group_id: &str,
    ) -> Result<GroupMembers, StoreError> {
        let shard = self.group_shard(tenant_id, group_id);
        let (mentor_id, members): (Option<String>, BTreeMap<String, i64>) = pipe()
            .cmd("GET")
            .arg(format!("{shard}:mentor"))
            .cmd("HGETALL")
            .arg(format!("{shard}:members"))
            .query_async(&mut self.connection.clone())
            .await?;
        Ok(GroupMembers {
            mentor_id,
            mentee_ids: members
                .into_iter()
                .filter(|(_, count)| *count > 0)
                .map(|(mentee, _)| mentee)
                .collect(),
        })
    }

    /// Of `mentee_ids`, how many enrolled on or before `enrolled_by` (eligible) and how many of
    /// those have an active day among `days` (retained).
    pub async fn retention(
        &self,
        tenant_id: &str,
        mentee_ids: &[String],
        enrolled_by: chrono::NaiveDate,
        days: &[Bucket],
    ) -> Result<(usize, usize), StoreError> {
        let cut_off = Bucket::Day(enrolled_by).to_string();
        let reads = mentee_ids.iter().map(|mentee| {
            let shard = self.partner_shard(tenant_id, mentee);
            let mut pipeline = pipe();
            pipeline.cmd("HGET").arg(format!("{shard}:f")).arg("enrol");
            for day in days {
                pipeline
                    .cmd("HGET")
                    .arg(format!("{shard}:c:{day}"))
                    .arg(Counter::ActiveDays.field());
            }
            let mut connection = self.connection.clone();
            async move {
                pipeline
                    .query_async::<Vec<Option<String>>>(&mut connection)
                    .await
            }
        });
        let (mut eligible, mut retained) = (0, 0);
        for answers in futures::future::try_join_all(reads).await? {
            let Some((enrolment, active)) = answers.split_first() else {
                continue;
            };
            // rank \x1f sponsor \x1f day bucket \x1f ...
            let enrolled_on = enrolment
                .as_deref()
                .and_then(|fact| fact.split('\u{1f}').nth(2));
            if enrolled_on.is_some_and(|day| day <= cut_off.as_str()) {
                eligible += 1;
                let active_days = |days: &Option<String>| {
                    days.as_deref()
                        .and_then(|days| days.parse::<i64>().ok())
                        .unwrap_or(0)
                };
                if active.iter().any(|days| active_days(days) > 0) {
                    retained += 1;
                }
            }
        }
        Ok((eligible, retained))
    }

    /// A subject's counters in each of `buckets`, in one round trip.
    pub async fn counters_by_bucket(
        &self,
        tenant_id: &str,
        subject: Subject<'_>,
        buckets: &[Bucket],
    ) -> Result<Vec<BTreeMap<Counter, i64>>, StoreError> {
        let (shard, kind) = match subject {
            Subject::Partner(partner) => (self.partner_shard(tenant_id, partner), "c"),
            Subject::Team(partner) => (self.partner_shard(tenant_id, partner), "t"),
            Subject::Group(group) => (self.group_shard(tenant_id, group), "c"),
            Subject::Tenant => (self.tenant_shard(tenant_id), "c"),
        };
        let mut pipeline = pipe();
        for bucket in buckets {
            pipeline
                .cmd("HGETALL")
                .arg(format!("{shard}:{kind}:{bucket}"));
        }
        let hashes: Vec<BTreeMap<String, i64>> =
            pipeline.query_async(&mut self.connection.clone()).await?;
        Ok(hashes
            .into_iter()
            .map(|hash| {
                hash.into_iter()
                    .filter_map(|(field, value)| Some((Counter::from_field(&field)?, value)))
                    .collect()
            })
            .collect())
    }
}

/// The id `shard` belongs to when it is one of the kind whose shard of the empty id is
/// `empty_id_shard` (a partner's or a group's hash tag ends in its id and the closing brace).
fn shard_id<'a>(shard: &'a str, empty_id_shard: &str) -> Option<&'a str> {
    shard
        .strip_prefix(empty_id_shard.trim_end_matches('}'))
        .and_then(|rest| rest.strip_suffix('}'))
}

/// `{applied, watermark, seq, entry, ...}` of the shard script run on `shard` of `tenant_id`.
fn parse_answer(
    value: Value,
    tenant_id: &Arc<str>,
    shard: &Arc<str>,
) -> Result<(bool, i64, Vec<OutboxEntry>), StoreError> {
    let unexpected = |value: &Value| StoreError::Answer(format!("{value:?}"));
    let Value::Array(parts) = value else {
        return Err(unexpected(&value));
    };
    let number = |value: &Value| match value {
        Value::Int(number) => Some(*number),
        Value::BulkString(bytes) => std::str::from_utf8(bytes).ok()?.parse().ok(),
        Value::SimpleString(text) => text.parse().ok(),
        _ => None,
    };
    let mut parts = parts.into_iter();
    let (Some(applied), Some(watermark)) = (parts.next(), parts.next()) else {
        return Err(StoreError::Answer("a short answer".into()));
    };
    let applied = number(&applied).ok_or_else(|| unexpected(&applied))? == 1;
    let watermark = number(&watermark).ok_or_else(|| unexpected(&watermark))?;
    let mut outbox = Vec::with_capacity(parts.len() / 2);
    while let Some(seq) = parts.next() {
        let seq = number(&seq)
            .and_then(|seq| u64::try_from(seq).ok())
            .ok_or_else(|| unexpected(&seq))?;
        let Some(Value::BulkString(body)) = parts.next() else {
            return Err(StoreError::Answer(format!("entry {seq} has no body")));
        };
        let body = String::from_utf8(body)
            .map_err(|error| StoreError::Answer(format!("entry {seq}: {error}")))?;
        let target_end = body
            .find('\u{1d}')
            .ok_or_else(|| StoreError::Answer(format!("entry {seq}: {body:?}")))?;
        outbox.push(OutboxEntry {
            tenant_id: tenant_id.clone(),
            source: shard.clone(),
            seq,
            body,
            target_end,
        });
    }
    Ok((applied, watermark, outbox))
}
