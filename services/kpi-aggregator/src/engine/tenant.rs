//! The writer of one tenant: its genealogy in memory, a cache of its records, and the batch
//! that loads, applies, rolls up and writes (docs/kpi-engine.md, "A batch").

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use mentorstream_redis::{Connection, RedisError, cmd};

use super::flush::{Flush, Meta, Outcome, acquire};
use super::teams::{Teams, deepest_first, with_upline};
use crate::calendar::{Bucket, Calendar};
use crate::signal::Signal;
use crate::state::codec::{self, CodecError};
use crate::state::counts::{Counters, LocalDay};
use crate::state::genealogy::{Genealogy, GenealogyError, Node};
use crate::state::group::GroupRecord;
use crate::state::keys::TenantKeys;
use crate::state::partner::{Effects, Event, EventKind, PartnerRecord};
use crate::state::subject::{Changed, OwnedSubject};
use crate::target::Target;
use mentorstream_proto::kpi::v1::SubjectKind;

/// Partner records kept in the cache at most between batches (about a KB each, decoded).
const PARTNER_CACHE: usize = 60_000;
/// Team records kept in the cache at most between batches.
const TEAM_CACHE: usize = 60_000;
/// Fields read by one `HMGET` at most.
const READ_CHUNK: usize = 2_000;

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("redis: {0}")]
    Redis(#[from] RedisError),
    /// Another writer took the tenant over; this one must drop it.
    #[error("another writer took tenant `{0}` over")]
    Fenced(String),
    #[error("tenant `{tenant}`: stored {what} `{id}` cannot be read: {error}")]
    Malformed {
        tenant: String,
        what: &'static str,
        id: String,
        error: CodecError,
    },
    #[error("tenant `{0}`: {1}")]
    Genealogy(String, GenealogyError),
}

/// One record of the tenant's input: where it is, and its events per partner.
#[derive(Debug, Clone)]
pub struct Input {
    /// `topic/partition`
    pub source: String,
    pub offset: i64,
    pub events: Vec<(String, Event)>,
}

/// What a batch did.
#[derive(Debug, Default)]
pub struct Applied {
    /// Signals to publish (already written as pending).
    pub signals: Vec<Signal>,
    /// Inputs refused for good, by position in the batch, with the reason.
    pub refused: Vec<(usize, String)>,
    /// The (subject, bucket) numbers the batch changed, when asked for.
    pub changed: Vec<Changed>,
}

/// What a batch watches besides applying: the tenant's targets, and whether to report the
/// numbers it changed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Watch<'a> {
    pub targets: &'a [Target],
    pub report: bool,
}

impl Watch<'_> {
    fn any(&self) -> bool {
        self.report || !self.targets.is_empty()
    }

    fn watches(&self, kind: SubjectKind) -> bool {
        self.targets
            .iter()
            .any(|target| target.subject_kind == kind)
    }
}

pub struct TenantWriter {
    tenant_id: Arc<str>,
    keys: TenantKeys,
    calendar: Calendar,
    meta: Meta,
    genealogy: Genealogy,
    partners: HashMap<Node, PartnerRecord>,
    teams: Teams,
    groups: HashMap<String, GroupRecord>,
    tenant: Option<Counters>,
    /// Signals written by the last batch, acknowledged by Kafka since: the next batch deletes
    /// them.
    acknowledged: Vec<String>,
}

impl std::fmt::Debug for TenantWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantWriter")
            .field("tenant_id", &self.tenant_id)
            .field("epoch", &self.meta.epoch)
            .field("seq", &self.meta.seq)
            .field("partners", &self.genealogy.len())
            .finish_non_exhaustive()
    }
}

/// What a batch accumulates between applying events and writing.
#[derive(Default)]
struct Work {
    /// Each partner's change of its own counters.
    personal: HashMap<Node, Counters>,
    groups: BTreeMap<String, Counters>,
    members: Vec<(String, String, crate::state::partner::MemberChange)>,
    joined: Vec<(String, String, String)>,
    /// Genealogy changes in order: (child, old sponsor, new sponsor).
    edges: Vec<(Node, Option<Node>, Option<Node>)>,
    dirty_partners: HashSet<Node>,
    dirty_teams: HashSet<Node>,
    /// Nodes numbered from here on are partners the batch met first.
    known: usize,
    latest: Vec<(Node, i64)>,
    goals_due: Vec<(Node, String, i64)>,
    signals: Vec<Signal>,
    refused: Vec<(usize, String)>,
    tenant_total: Counters,
}

impl TenantWriter {
    /// Takes `tenant_id` over: a new epoch, the watermarks, the genealogy, and the signals a
    /// previous writer wrote but may not have published.
    pub async fn acquire(
        connection: &Connection,
        keys: TenantKeys,
        tenant_id: &str,
        calendar: Calendar,
    ) -> Result<(Self, Vec<Signal>), WriteError> {
        let meta = acquire(connection, &keys.meta()).await?;
        let mut writer = Self {
            tenant_id: tenant_id.into(),
            keys,
            calendar,
            meta,
            genealogy: Genealogy::default(),
            partners: HashMap::new(),
            teams: Teams::default(),
            groups: HashMap::new(),
            tenant: None,
            acknowledged: Vec::new(),
        };
        writer.load_genealogy(connection).await?;
        writer.load_hubs(connection).await?;
        let pending = writer.pending_signals(connection).await?;
        writer.acknowledged = pending
            .iter()
            .map(|signal| signal.signal_id.clone())
            .collect();
        Ok((writer, pending))
    }

    /// The last applied offset of a `topic/partition`.
    pub fn watermark(&self, source: &str) -> Option<i64> {
        self.meta.watermarks.get(source).copied()
    }

    async fn load_genealogy(&mut self, connection: &Connection) -> Result<(), WriteError> {
        let key = self.keys.sponsors();
        let mut cursor = 0_u64;
        loop {
            let (next, pairs): (u64, Vec<(String, String)>) = cmd("HSCAN")
                .arg(&key)
                .arg(cursor)
                .arg("COUNT")
                .arg(10_000)
                .query_async(&mut connection.clone())
                .await?;
            for (partner, sponsor) in pairs {
                let child = self.node(&partner)?;
                let parent = if sponsor.is_empty() {
                    None
                } else {
                    Some(self.node(&sponsor)?)
                };
                // Stored edges were checked when they were made.
                self.genealogy
                    .set_parent(child, parent)
                    .map_err(|error| self.genealogy_error(error))?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    /// Every stored team record is a hub's.
    async fn load_hubs(&mut self, connection: &Connection) -> Result<(), WriteError> {
        let hubs: Vec<String> = cmd("HKEYS")
            .arg(self.keys.teams())
            .query_async(&mut connection.clone())
            .await?;
        for hub in hubs {
            let node = self.node(&hub)?;
            self.teams.know_hub(node);
        }
        Ok(())
    }

    async fn pending_signals(&self, connection: &Connection) -> Result<Vec<Signal>, WriteError> {
        let stored: HashMap<String, Vec<u8>> = cmd("HGETALL")
            .arg(self.keys.signals())
            .query_async(&mut connection.clone())
            .await?;
        let mut signals = Vec::with_capacity(stored.len());
        for (id, bytes) in stored {
            let signal = <mentorstream_proto::kpi::v1::KpiSignal as prost::Message>::decode(
                bytes.as_slice(),
            )
            .ok()
            .and_then(Signal::from_proto)
            .ok_or_else(|| WriteError::Malformed {
                tenant: self.tenant_id.to_string(),
                what: "signal",
                id: id.clone(),
                error: CodecError::Invalid("not a KpiSignal"),
            })?;
            signals.push(signal);
        }
        Ok(signals)
    }

    fn node(&mut self, id: &str) -> Result<Node, WriteError> {
        self.genealogy
            .node(id)
            .map_err(|error| self.genealogy_error(error))
    }

    fn genealogy_error(&self, error: GenealogyError) -> WriteError {
        WriteError::Genealogy(self.tenant_id.to_string(), error)
    }

    /// Applies `inputs` (in arrival order) and writes the result in one call. On an error the
    /// writer must be dropped: its cache may hold changes Redis does not.
    pub async fn apply(
        &mut self,
        connection: &Connection,
        inputs: &[Input],
        watch: Watch<'_>,
    ) -> Result<Applied, WriteError> {
        let fresh: Vec<(usize, &Input)> = inputs
            .iter()
            .enumerate()
            .filter(|(_, input)| {
                self.watermark(&input.source)
                    .is_none_or(|mark| input.offset > mark)
            })
            .collect();
        if fresh.is_empty() {
            return Ok(Applied::default());
        }
        let mut work = Work {
            known: self.genealogy.len(),
            ..Work::default()
        };
        let started = std::time::Instant::now();
        self.load_partners(connection, &fresh).await?;
        let loaded = started.elapsed();
        for (position, input) in &fresh {
            match self.refusal(input) {
                Some(reason) => work.refused.push((*position, reason)),
                None => {
                    for (partner, event) in &input.events {
                        self.apply_event(partner, event, &mut work)?;
                    }
                }
            }
        }
        let applied_at = started.elapsed();
        self.load_rollups(connection, &work, watch).await?;
        let rollups_loaded = started.elapsed();
        self.roll_up(&mut work)?;
        let rolled = started.elapsed();
        let changed = self.watch(&mut work, watch);
        let flush = self.flush(inputs, &mut work);
        let built = started.elapsed();
        let outcome = flush.send(connection, &self.keys.meta()).await?;
        tracing::debug!(
            inputs = fresh.len(),
            partners = work.dirty_partners.len(),
            teams = work.dirty_teams.len(),
            commands = flush.commands.len(),
            bytes = flush.commands.iter().flat_map(|command| &command.arguments).map(Vec::len).sum::<usize>(),
            ?loaded,
            ?applied_at,
            ?rollups_loaded,
            ?rolled,
            ?built,
            sent = ?started.elapsed(),
            "batch"
        );
        match outcome {
            Outcome::Fenced => return Err(WriteError::Fenced(self.tenant_id.to_string())),
            Outcome::Applied => {}
        }
        self.meta.seq = flush.seq;
        for (source, offset) in flush.watermarks {
            self.meta.watermarks.insert(source, offset);
        }
        self.acknowledged = work
            .signals
            .iter()
            .map(|signal| signal.signal_id.clone())
            .collect();
        self.trim_cache();
        Ok(Applied {
            signals: work.signals,
            refused: work.refused,
            changed,
        })
    }

    /// Why an input can never be applied: an enrolment that would make a cycle.
    fn refusal(&self, input: &Input) -> Option<String> {
        for (partner, event) in &input.events {
            let EventKind::Enrolled { sponsor } = &event.kind else {
                continue;
            };
            let (Some(child), Some(parent)) =
                (self.genealogy.find(partner), self.genealogy.find(sponsor))
            else {
                continue;
            };
            let record = self.partners.get(&child);
            let earlier = record
                .and_then(|record| record.enrolment.as_ref())
                .is_none_or(|enrolment| event.rank < enrolment.rank);
            if earlier
                && (child == parent || self.genealogy.upline(parent).any(|node| node == child))
            {
                return Some(
                    GenealogyError::Cycle {
                        child: partner.clone(),
                        parent: sponsor.clone(),
                    }
                    .to_string(),
                );
            }
        }
        None
    }

    fn apply_event(
        &mut self,
        partner: &str,
        event: &Event,
        work: &mut Work,
    ) -> Result<(), WriteError> {
        let node = self.node(partner)?;
        let mut effects = Effects::default();
        let record = self.partners.entry(node).or_default();
        if !record.apply(event, &mut effects) {
            return Ok(());
        }
        work.dirty_partners.insert(node);
        for recruit in std::mem::take(&mut effects.recruits) {
            let sponsor = self.node(&recruit.sponsor)?;
            let mut theirs = Effects::default();
            self.partners.entry(sponsor).or_default().recruit(
                &recruit.rank,
                recruit.day,
                recruit.amount,
                &mut theirs,
            );
            work.dirty_partners.insert(sponsor);
            self.absorb(sponsor, &recruit.sponsor, theirs, work);
        }
        if let Some((_, new)) = &effects.sponsor {
            let old = self.genealogy.parent(node);
            let new = if new.is_empty() {
                None
            } else {
                Some(self.node(new)?)
            };
            self.genealogy
                .set_parent(node, new)
                .map_err(|error| self.genealogy_error(error))?;
            work.edges.push((node, old, new));
        }
        self.absorb(node, partner, effects, work);
        Ok(())
    }

    /// Adds one partner's effects to the batch.
    fn absorb(&self, node: Node, partner: &str, effects: Effects, work: &mut Work) {
        match work.personal.entry(node) {
            std::collections::hash_map::Entry::Vacant(entry) => {
                entry.insert(effects.personal);
            }
            std::collections::hash_map::Entry::Occupied(mut entry) => {
                entry.get_mut().add_all(&effects.personal, 1);
            }
        }
        for (group, counters) in effects.groups {
            work.groups.entry(group).or_default().add_all(&counters, 1);
        }
        for change in effects.members {
            work.members
                .push((change.group.clone(), partner.to_owned(), change));
        }
        for (group, mentor) in effects.joined {
            work.joined.push((group, partner.to_owned(), mentor));
        }
        if let Some(latest) = effects.latest_activity {
            work.latest.push((node, latest.micros));
        }
        for (goal, due) in effects.goals_due {
            work.goals_due.push((node, goal, due));
        }
        for announcement in &effects.announcements {
            work.signals
                .push(Signal::announced(&self.tenant_id, partner, announcement));
        }
    }

    /// Loads the records of the partners of `inputs` and of the sponsors they name or had.
    async fn load_partners(
        &mut self,
        connection: &Connection,
        inputs: &[(usize, &Input)],
    ) -> Result<(), WriteError> {
        let mut wanted: BTreeSet<&str> = BTreeSet::new();
        for (_, input) in inputs {
            for (partner, event) in &input.events {
                wanted.insert(partner);
                if let EventKind::Enrolled { sponsor } = &event.kind
                    && !sponsor.is_empty()
                {
                    wanted.insert(sponsor);
                }
            }
        }
        let wanted: Vec<String> = wanted.into_iter().map(str::to_owned).collect();
        self.read_partners(connection, &wanted).await?;
        // The sponsors enrolments name now: a recruit may move away from them.
        let mut sponsors = Vec::new();
        for partner in &wanted {
            let node = self.node(partner)?;
            if let Some(enrolment) = self
                .partners
                .get(&node)
                .and_then(|record| record.enrolment.as_ref())
                && !enrolment.sponsor.is_empty()
            {
                sponsors.push(enrolment.sponsor.clone());
            }
        }
        self.read_partners(connection, &sponsors).await
    }

    async fn read_partners(
        &mut self,
        connection: &Connection,
        ids: &[String],
    ) -> Result<(), WriteError> {
        let mut missing = Vec::new();
        for id in ids {
            let node = self.node(id)?;
            if !self.partners.contains_key(&node) {
                missing.push((node, id.as_str()));
            }
        }
        missing.sort_unstable();
        missing.dedup();
        let key = self.keys.partners();
        for chunk in missing.chunks(READ_CHUNK) {
            let values = hmget(connection, &key, chunk.iter().map(|(_, id)| *id)).await?;
            for ((node, id), value) in chunk.iter().zip(values) {
                let record = match value {
                    Some(bytes) => {
                        codec::decode_partner(&bytes).map_err(|error| WriteError::Malformed {
                            tenant: self.tenant_id.to_string(),
                            what: "partner",
                            id: (*id).to_owned(),
                            error,
                        })?
                    }
                    None => PartnerRecord::default(),
                };
                self.partners.insert(*node, record);
            }
        }
        Ok(())
    }

    /// Loads the team records every genealogy change and roll-up of the batch reaches, the
    /// groups and the tenant.
    async fn load_rollups(
        &mut self,
        connection: &Connection,
        work: &Work,
        watch: Watch<'_>,
    ) -> Result<(), WriteError> {
        let changed: Vec<Node> = work.personal.keys().copied().collect();
        let mut needs = self
            .teams
            .needs(&mut self.genealogy, &work.edges, &changed)
            .map_err(|error| self.genealogy_error(error))?;
        if watch.watches(SubjectKind::Team) {
            // A team target watches small teams too: they are summed after the batch.
            for partner in &changed {
                for node in with_upline(&self.genealogy, Some(*partner)) {
                    self.teams.members(&self.genealogy, node, &mut needs);
                }
            }
        }
        let partners: Vec<String> = needs
            .partners
            .iter()
            .map(|node| self.genealogy.id(*node).to_owned())
            .collect();
        self.read_partners(connection, &partners).await?;
        let missing: Vec<Node> = needs
            .hubs
            .into_iter()
            .filter(|node| !self.teams.records.contains_key(node))
            .collect();
        let key = self.keys.teams();
        for chunk in missing.chunks(READ_CHUNK) {
            let ids: Vec<String> = chunk
                .iter()
                .map(|node| self.genealogy.id(*node).to_owned())
                .collect();
            let values = hmget(connection, &key, ids.iter().map(String::as_str)).await?;
            for ((node, id), value) in chunk.iter().zip(&ids).zip(values) {
                let team = self.counters(value.as_deref(), "team", id)?;
                self.teams.records.insert(*node, team);
            }
        }
        let groups: BTreeSet<&str> = work
            .groups
            .keys()
            .map(String::as_str)
            .chain(work.members.iter().map(|(group, _, _)| group.as_str()))
            .chain(work.joined.iter().map(|(group, _, _)| group.as_str()))
            .filter(|group| !self.groups.contains_key(*group))
            .collect();
        let groups: Vec<String> = groups.into_iter().map(str::to_owned).collect();
        let values = hmget(
            connection,
            &self.keys.groups(),
            groups.iter().map(String::as_str),
        )
        .await?;
        for (group, value) in groups.into_iter().zip(values) {
            let record = match value {
                Some(bytes) => {
                    codec::decode_group(&bytes).map_err(|error| WriteError::Malformed {
                        tenant: self.tenant_id.to_string(),
                        what: "group",
                        id: group.clone(),
                        error,
                    })?
                }
                None => GroupRecord::default(),
            };
            self.groups.insert(group, record);
        }
        if self.tenant.is_none() {
            let value: Option<Vec<u8>> = cmd("GET")
                .arg(self.keys.tenant())
                .query_async(&mut connection.clone())
                .await?;
            self.tenant =
                Some(self.counters(value.as_deref(), "tenant", &self.tenant_id.clone())?);
        }
        Ok(())
    }

    fn counters(
        &self,
        value: Option<&[u8]>,
        what: &'static str,
        id: &str,
    ) -> Result<Counters, WriteError> {
        value
            .map(codec::decode_counters)
            .transpose()
            .map_err(|error| WriteError::Malformed {
                tenant: self.tenant_id.to_string(),
                what,
                id: id.to_owned(),
                error,
            })
            .map(Option::unwrap_or_default)
    }

    /// Team totals: every genealogy change moves its child's team from the old upline to the
    /// new one, in order; then every partner's change of its own counters reaches the partner's
    /// team and every ancestor's, each team changed once however many changes reach it.
    fn roll_up(&mut self, work: &mut Work) -> Result<(), WriteError> {
        work.personal.retain(|_, delta| !delta.is_empty());
        let tenant = self.tenant.get_or_insert_with(Counters::default);
        for delta in work.personal.values() {
            tenant.add_all(delta, 1);
            work.tenant_total.add_all(delta, 1);
        }
        work.dirty_teams = self
            .teams
            .apply(
                &mut self.genealogy,
                &work.edges,
                &work.personal,
                &self.partners,
            )
            .map_err(|error| self.genealogy_error(error))?;
        for (group, delta) in &work.groups {
            self.groups
                .entry(group.clone())
                .or_default()
                .counters
                .add_all(delta, 1);
        }
        for (group, mentee, change) in &work.members {
            self.groups
                .entry(group.clone())
                .or_default()
                .member(mentee, change);
        }
        for (group, mentee, mentor) in &work.joined {
            self.groups
                .entry(group.clone())
                .or_default()
                .joined(mentee, mentor);
        }
        Ok(())
    }

    /// Target crossings (a bucket's number from below a threshold to at or above it over the
    /// batch) become signals; the changed (subject, bucket) numbers are returned when asked
    /// for.
    fn watch(&self, work: &mut Work, watch: Watch<'_>) -> Vec<Changed> {
        if !watch.any() {
            return Vec::new();
        }
        let now = chrono::Utc::now();
        // Without team targets, a report needs only which teams changed, not by how much.
        let team_keys = if watch.report && !watch.watches(SubjectKind::Team) {
            self.team_keys(work)
        } else {
            Vec::new()
        };
        let mut changed = Vec::new();
        let mut crossed = Vec::new();
        let mut look = |kind: SubjectKind,
                        subject: OwnedSubject,
                        recipient: &str,
                        after: &Counters,
                        delta: &Counters| {
            let id = match &subject {
                OwnedSubject::Partner(id) | OwnedSubject::Team(id) | OwnedSubject::Group(id) => {
                    id.as_str()
                }
                OwnedSubject::Tenant => "",
            };
            for (bucket, change) in delta.buckets() {
                for target in watch
                    .targets
                    .iter()
                    .filter(|target| target.subject_kind == kind)
                {
                    let amount = change.get(target.counter);
                    let value = after.bucket(bucket).get(target.counter);
                    if amount != 0
                        && target.watches(bucket)
                        && value >= target.threshold
                        && value - amount < target.threshold
                    {
                        crossed.push(Signal::target_crossed_now(
                            &self.tenant_id,
                            target,
                            id,
                            recipient,
                            bucket,
                            value,
                            now,
                        ));
                    }
                }
                if watch.report {
                    changed.push(Changed {
                        tenant_id: self.tenant_id.clone(),
                        subject: subject.clone(),
                        bucket,
                    });
                }
            }
        };
        for (node, delta) in &work.personal {
            let id = self.genealogy.id(*node);
            if let Some(record) = self.partners.get(node) {
                look(
                    SubjectKind::Partner,
                    OwnedSubject::Partner(id.to_owned()),
                    id,
                    &record.personal,
                    delta,
                );
            }
        }
        if watch.watches(SubjectKind::Team) {
            for (node, delta) in self.team_changes(work) {
                let id = self.genealogy.id(node);
                let team = self.teams.total(&self.genealogy, node, &self.partners);
                look(
                    SubjectKind::Team,
                    OwnedSubject::Team(id.to_owned()),
                    id,
                    &team,
                    &delta,
                );
            }
        }
        for (group, delta) in &work.groups {
            if let Some(record) = self.groups.get(group) {
                look(
                    SubjectKind::Group,
                    OwnedSubject::Group(group.clone()),
                    &record.mentor,
                    &record.counters,
                    delta,
                );
            }
        }
        if let Some(tenant) = &self.tenant {
            look(
                SubjectKind::Tenant,
                OwnedSubject::Tenant,
                "",
                tenant,
                &work.tenant_total,
            );
        }
        work.signals.extend(crossed);
        changed.extend(team_keys);
        changed
    }

    /// The (team, bucket) numbers a batch changed, hub or not: each partner's changed buckets
    /// up its upline, and each moved team's buckets up its old and new uplines.
    fn team_keys(&self, work: &Work) -> Vec<Changed> {
        let genealogy = &self.genealogy;
        let mut reached: HashMap<Node, BTreeSet<Bucket>> = HashMap::new();
        let mut reach = |start: Option<Node>, counters: &Counters| {
            let buckets: Vec<Bucket> = counters.buckets().map(|(bucket, _)| bucket).collect();
            for node in with_upline(genealogy, start) {
                let known = reached.entry(node).or_default();
                if buckets.iter().all(|bucket| known.contains(bucket)) {
                    // Everything above was reached with these buckets already.
                    break;
                }
                known.extend(buckets.iter().copied());
            }
        };
        for (node, delta) in &work.personal {
            reach(Some(*node), delta);
        }
        for (child, old, new) in &work.edges {
            let team = self.teams.total(genealogy, *child, &self.partners);
            reach(*old, &team);
            reach(*new, &team);
        }
        let mut keys = Vec::new();
        for (node, buckets) in reached {
            let subject = OwnedSubject::Team(genealogy.id(node).to_owned());
            keys.extend(buckets.into_iter().map(|bucket| Changed {
                tenant_id: self.tenant_id.clone(),
                subject: subject.clone(),
                bucket,
            }));
        }
        keys
    }

    /// How the batch changed every team it reached, hub or not: the partners' own changes up
    /// their final upline (deepest first, each team once), and each moved team off its old
    /// upline and onto its new one.
    fn team_changes(&self, work: &Work) -> HashMap<Node, Counters> {
        let genealogy = &self.genealogy;
        let mut changes: HashMap<Node, Counters> = HashMap::new();
        let mut pending: HashMap<Node, Counters> = work.personal.clone();
        let reached: HashSet<Node> = pending
            .keys()
            .flat_map(|node| with_upline(genealogy, Some(*node)))
            .collect();
        for node in deepest_first(genealogy, reached) {
            let Some(delta) = pending.remove(&node) else {
                continue;
            };
            if let Some(parent) = genealogy.parent(node) {
                pending.entry(parent).or_default().add_all(&delta, 1);
            }
            changes.entry(node).or_default().add_all(&delta, 1);
        }
        for (child, old, new) in &work.edges {
            let team = self.teams.total(genealogy, *child, &self.partners);
            for (start, sign) in [(old, -1), (new, 1)] {
                for node in with_upline(genealogy, *start) {
                    changes.entry(node).or_default().add_all(&team, sign);
                }
            }
        }
        changes
    }

    /// Everything the batch changed, as one fenced call.
    fn flush(&mut self, inputs: &[Input], work: &mut Work) -> Flush {
        let today = LocalDay::of(self.calendar.local_day(chrono::Utc::now()));
        let mut flush = Flush {
            epoch: self.meta.epoch,
            seq: self.meta.seq + 1,
            ..Flush::default()
        };
        let mut marks: BTreeMap<&str, i64> = BTreeMap::new();
        for input in inputs {
            let mark = marks.entry(&input.source).or_insert(input.offset);
            *mark = (*mark).max(input.offset);
        }
        flush.watermarks = marks
            .into_iter()
            .map(|(source, offset)| (source.to_owned(), offset))
            .collect();
        let genealogy = &self.genealogy;
        let id = |node: &Node| genealogy.id(*node).as_bytes().to_vec();
        let partners = &mut self.partners;
        flush.hset(
            &self.keys.partners(),
            work.dirty_partners.iter().map(|node| {
                let record = partners.entry(*node).or_default();
                record.personal.prune(today);
                record.prune_log();
                (id(node), codec::encode_partner(record))
            }),
        );
        let teams = &mut self.teams.records;
        flush.hset(
            &self.keys.teams(),
            work.dirty_teams.iter().map(|node| {
                let team = teams.entry(*node).or_default();
                team.prune(today);
                (id(node), codec::encode_counters(team))
            }),
        );
        // Every partner the tenant has, with its sponsor: a new writer loads the genealogy
        // from here.
        let met = (work.known..genealogy.len()).filter_map(|node| Node::try_from(node).ok());
        let mut sponsors: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        for node in met.chain(work.edges.iter().map(|(child, _, _)| *child)) {
            let node = &node;
            let sponsor = genealogy
                .parent(*node)
                .map(|parent| id(&parent))
                .unwrap_or_default();
            sponsors.push((id(node), sponsor));
        }
        flush.hset(&self.keys.sponsors(), sponsors);
        for (child, old, new) in &work.edges {
            if let Some(old) = old {
                flush.each(
                    "SREM",
                    &self.keys.recruits(genealogy.id(*old)),
                    &[],
                    &[id(child)],
                );
            }
            if let Some(new) = new {
                flush.each(
                    "SADD",
                    &self.keys.recruits(genealogy.id(*new)),
                    &[],
                    &[id(child)],
                );
            }
        }
        let changed_groups: BTreeSet<&String> = work
            .groups
            .keys()
            .chain(work.members.iter().map(|(group, _, _)| group))
            .chain(work.joined.iter().map(|(group, _, _)| group))
            .collect();
        let groups = &mut self.groups;
        flush.hset(
            &self.keys.groups(),
            changed_groups.into_iter().map(|group| {
                let record = groups.entry(group.clone()).or_default();
                record.counters.prune(today);
                (group.as_bytes().to_vec(), codec::encode_group(record))
            }),
        );
        if let Some(tenant) = &mut self.tenant {
            tenant.prune(today);
            flush.set(&self.keys.tenant(), codec::encode_counters(tenant));
        }
        let mut idle = Vec::new();
        for (node, micros) in &work.latest {
            idle.push(micros.to_string().into_bytes());
            idle.push(id(node));
        }
        flush.each("ZADD", &self.keys.idle(), &["GT"], &idle);
        let mut due = Vec::new();
        for (node, goal, micros) in &work.goals_due {
            due.push(micros.to_string().into_bytes());
            due.push(format!("{}\u{1c}{goal}", genealogy.id(*node)).into_bytes());
        }
        flush.each("ZADD", &self.keys.goals(), &[], &due);
        flush.each(
            "HDEL",
            &self.keys.signals(),
            &[],
            &self
                .acknowledged
                .iter()
                .map(|id| id.as_bytes().to_vec())
                .collect::<Vec<_>>(),
        );
        flush.hset(
            &self.keys.signals(),
            work.signals.iter().map(|signal| {
                let proto = prost::Message::encode_to_vec(&signal.to_proto());
                (signal.signal_id.as_bytes().to_vec(), proto)
            }),
        );
        flush
    }

    /// Forgets cached records beyond the bound (they are in Redis).
    fn trim_cache(&mut self) {
        trim(&mut self.partners, PARTNER_CACHE);
        trim(&mut self.teams.records, TEAM_CACHE);
        trim(&mut self.groups, PARTNER_CACHE);
    }
}

/// Beyond `limit` entries, forgets a quarter of `cache` (whichever the hash order gives: a
/// cheap random eviction that keeps most of what is hot).
fn trim<K: std::hash::Hash + Eq, V>(cache: &mut HashMap<K, V>, limit: usize) {
    if cache.len() > limit {
        let mut forget = cache.len() - limit * 3 / 4;
        cache.retain(|_, _| {
            let keep = forget == 0;
            forget = forget.saturating_sub(1);
            keep
        });
    }
}

/// The values of `fields` of the hash `key`, in order.
async fn hmget<'a>(
    connection: &Connection,
    key: &str,
    fields: impl Iterator<Item = &'a str>,
) -> Result<Vec<Option<Vec<u8>>>, RedisError> {
    let mut command = cmd("HMGET");
    command.arg(key);
    let mut any = false;
    for field in fields {
        command.arg(field);
        any = true;
    }
    if !any {
        return Ok(Vec::new());
    }
    command.query_async(&mut connection.clone()).await
}
