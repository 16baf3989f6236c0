//! The query path: what KpiService, the updates publisher and the sweeps read, from the records
//! the engine writes (docs/kpi-engine.md). Nothing here writes a number.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use mentorstream_redis::{Connection, KeySpace, RedisError, cmd};

use crate::calendar::Bucket;
use crate::fold::rank as rank_text;
use crate::metric::Counter;
use crate::signal::{Signal, SignalSink};
use crate::state::codec::{self, CodecError};
use crate::state::counts::{Counters, Counts, LocalDay};
use crate::state::group::GroupRecord;
use crate::state::keys::HUB_SIZE;
use crate::state::keys::TenantKeys;
use crate::state::membership::Change;
use crate::state::partner::{DayLog, PartnerRecord};
use crate::state::rank::Rank;
pub use crate::state::subject::{Changed, OwnedSubject, Subject};

/// Idle partners (or due goals) announced per round trip of a sweep.
const SWEEP_BATCH: usize = 1000;
/// Records read per round trip when a query reads many.
const READ_CHUNK: usize = 1000;

/// Removes members whose score is still the one given (a newer activity keeps them indexed).
const UNINDEX_IF_UNCHANGED: &str = "for i = 1, #ARGV, 2 do \
                                      if tonumber(redis.call('ZSCORE', KEYS[1], ARGV[i])) \
                                         == tonumber(ARGV[i + 1]) then \
                                        redis.call('ZREM', KEYS[1], ARGV[i]) \
                                      end \
                                    end \
                                    return 0";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("Redis is unavailable: {0}")]
    Redis(#[from] RedisError),
    #[error("a stored record cannot be read: {0}")]
    Record(#[from] CodecError),
    #[error("cannot publish signals: {0}")]
    Signals(String),
    #[error("more than {0} partners")]
    TooLarge(usize),
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
    /// The group a contribution of the event of `rank` counts for (the rules' membership:
    /// events up to that moment in rank order; an unassignment ends only the membership it
    /// names).
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

/// Who a group is now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupMembers {
    /// The mentor, once the group has had a mentee.
    pub mentor_id: Option<String>,
    /// Current mentees, sorted.
    pub mentee_ids: Vec<String>,
}

/// Where the records of one key namespace (a generation) are read.
#[derive(Clone)]
pub struct Store {
    connection: Connection,
    keys: KeySpace,
    signals: Option<Arc<dyn SignalSink>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

/// The counters of `buckets`, one map per bucket, zeros left out.
fn by_bucket(counters: &Counters, buckets: &[Bucket]) -> Vec<BTreeMap<Counter, i64>> {
    buckets
        .iter()
        .map(|bucket| non_zero(&counters.bucket(*bucket)))
        .collect()
}

fn non_zero(counts: &Counts) -> BTreeMap<Counter, i64> {
    counts.iter().filter(|(_, value)| *value != 0).collect()
}

fn rank_string(rank: &Rank) -> String {
    rank_text(rank.occurred_at(), &rank.source, &rank.id)
}

impl Store {
    pub fn new(connection: Connection, keys: KeySpace) -> Self {
        Self {
            connection,
            keys,
            signals: None,
        }
    }

    /// Where the sweeps publish.
    pub fn with_signals(mut self, sink: Arc<dyn SignalSink>) -> Self {
        self.signals = Some(sink);
        self
    }

    pub fn keys(&self) -> &KeySpace {
        &self.keys
    }

    fn tenant(&self, tenant_id: &str) -> TenantKeys {
        TenantKeys::new(&self.keys, tenant_id)
    }

    async fn field(&self, key: &str, field: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(cmd("HGET")
            .arg(key)
            .arg(field)
            .query_async(&mut self.connection.clone())
            .await?)
    }

    /// The records of `fields` of the hash `key`, in order (`None` where there is none).
    async fn fields(
        &self,
        key: &str,
        fields: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let mut values = Vec::with_capacity(fields.len());
        for chunk in fields.chunks(READ_CHUNK) {
            let read: Vec<Option<Vec<u8>>> = cmd("HMGET")
                .arg(key)
                .arg(chunk)
                .query_async(&mut self.connection.clone())
                .await?;
            values.extend(read);
        }
        Ok(values)
    }

    /// Whether the tenant has a record of `subject`: a partner (or team root) some accepted
    /// event named, a group some mentee was assigned to; the tenant always.
    pub async fn knows(&self, tenant_id: &str, subject: Subject<'_>) -> Result<bool, StoreError> {
        let keys = self.tenant(tenant_id);
        let (key, field) = match subject {
            Subject::Partner(id) | Subject::Team(id) => (keys.partners(), id),
            Subject::Group(id) => (keys.groups(), id),
            Subject::Tenant => return Ok(true),
        };
        Ok(cmd("HEXISTS")
            .arg(key)
            .arg(field)
            .query_async(&mut self.connection.clone())
            .await?)
    }

    /// A partner's record, if the partner has one.
    pub async fn partner(
        &self,
        tenant_id: &str,
        partner_id: &str,
    ) -> Result<Option<PartnerRecord>, StoreError> {
        let keys = self.tenant(tenant_id);
        let value = self.field(&keys.partners(), partner_id).await?;
        Ok(value
            .map(|bytes| codec::decode_partner(&bytes))
            .transpose()?)
    }

    /// A group's record, if the group has one.
    pub async fn group(
        &self,
        tenant_id: &str,
        group_id: &str,
    ) -> Result<Option<GroupRecord>, StoreError> {
        let keys = self.tenant(tenant_id);
        let value = self.field(&keys.groups(), group_id).await?;
        Ok(value.map(|bytes| codec::decode_group(&bytes)).transpose()?)
    }

    /// A subject's counters in every bucket.
    pub async fn subject_counters(
        &self,
        tenant_id: &str,
        subject: Subject<'_>,
    ) -> Result<Counters, StoreError> {
        let keys = self.tenant(tenant_id);
        Ok(match subject {
            Subject::Partner(partner) => self
                .partner(tenant_id, partner)
                .await?
                .map(|record| record.personal)
                .unwrap_or_default(),
            Subject::Team(partner) => match self.field(&keys.teams(), partner).await? {
                Some(bytes) => codec::decode_counters(&bytes)?,
                None => self.small_team(tenant_id, partner).await?,
            },
            Subject::Group(group) => self
                .group(tenant_id, group)
                .await?
                .map(|record| record.counters)
                .unwrap_or_default(),
            Subject::Tenant => {
                let value: Option<Vec<u8>> = cmd("GET")
                    .arg(keys.tenant())
                    .query_async(&mut self.connection.clone())
                    .await?;
                value
                    .map(|bytes| codec::decode_counters(&bytes))
                    .transpose()?
                    .unwrap_or_default()
            }
        })
    }

    /// Every subject of the tenant that has counters, with all of them: for checks of the
    /// whole state (tests, the bench) rather than for answering queries.
    pub async fn all_counters(
        &self,
        tenant_id: &str,
    ) -> Result<Vec<(OwnedSubject, Counters)>, StoreError> {
        let keys = self.tenant(tenant_id);
        let mut all = Vec::new();
        for (partner, bytes) in self.scan(&keys.partners()).await? {
            all.push((
                OwnedSubject::Partner(partner),
                codec::decode_partner(&bytes)?.personal,
            ));
        }
        for (partner, _) in self.scan(&keys.sponsors()).await? {
            let team = self
                .subject_counters(tenant_id, Subject::Team(&partner))
                .await?;
            all.push((OwnedSubject::Team(partner), team));
        }
        for (group, bytes) in self.scan(&keys.groups()).await? {
            all.push((
                OwnedSubject::Group(group),
                codec::decode_group(&bytes)?.counters,
            ));
        }
        all.push((
            OwnedSubject::Tenant,
            self.subject_counters(tenant_id, Subject::Tenant).await?,
        ));
        Ok(all)
    }

    /// Every field of the hash `key`, a page at a time.
    async fn scan(&self, key: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut all = Vec::new();
        let mut cursor = 0_u64;
        loop {
            let (next, pairs): (u64, Vec<(String, Vec<u8>)>) = cmd("HSCAN")
                .arg(key)
                .arg(cursor)
                .arg("COUNT")
                .arg(READ_CHUNK)
                .query_async(&mut self.connection.clone())
                .await?;
            all.extend(pairs);
            if next == 0 {
                return Ok(all);
            }
            cursor = next;
        }
    }

    /// The team of a partner without a team record: fewer than [`HUB_SIZE`] partners, summed
    /// from their records (docs/kpi-engine.md, "Team totals").
    async fn small_team(&self, tenant_id: &str, partner_id: &str) -> Result<Counters, StoreError> {
        // Beyond a hub's size the subtree would have a record: a bound, not an expectation.
        let limit = usize::try_from(HUB_SIZE).unwrap_or(usize::MAX) * 4;
        let members = self.downline(tenant_id, partner_id, limit).await?;
        let mut team = Counters::default();
        let key = self.tenant(tenant_id).partners();
        for value in self.fields(&key, &members).await?.into_iter().flatten() {
            team.add_all(&codec::decode_partner(&value)?.personal, 1);
        }
        Ok(team)
    }

    /// A subject's counters in `buckets`, summed (a rolling window is many days).
    pub async fn counters(
        &self,
        tenant_id: &str,
        subject: Subject<'_>,
        buckets: &[Bucket],
    ) -> Result<BTreeMap<Counter, i64>, StoreError> {
        let counters = self.subject_counters(tenant_id, subject).await?;
        Ok(non_zero(&counters.sum(buckets)))
    }

    /// A subject's counters in each of `buckets`.
    pub async fn counters_by_bucket(
        &self,
        tenant_id: &str,
        subject: Subject<'_>,
        buckets: &[Bucket],
    ) -> Result<Vec<BTreeMap<Counter, i64>>, StoreError> {
        let counters = self.subject_counters(tenant_id, subject).await?;
        Ok(by_bucket(&counters, buckets))
    }

    /// One page of the tenant-wide ranking of partners by `counter` summed over `buckets`:
    /// best first, ties by partner id, partners at zero left out. Returns the page and
    /// whether more follow. Reads every partner record of the tenant.
    pub async fn leaderboard(
        &self,
        tenant_id: &str,
        counter: Counter,
        buckets: &[Bucket],
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<(String, i64)>, bool), StoreError> {
        let key = self.tenant(tenant_id).partners();
        let mut ranked: Vec<(String, i64)> = Vec::new();
        for (partner, bytes) in self.scan(&key).await? {
            let value = codec::decode_partner(&bytes)?
                .personal
                .sum(buckets)
                .get(counter);
            if value != 0 {
                ranked.push((partner, value));
            }
        }
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let more = ranked.len() > offset.saturating_add(limit);
        Ok((ranked.into_iter().skip(offset).take(limit).collect(), more))
    }

    /// A partner's enrolment, first sale, ranks and membership events.
    pub async fn journey_facts(
        &self,
        tenant_id: &str,
        partner_id: &str,
    ) -> Result<JourneyFacts, StoreError> {
        let Some(record) = self.partner(tenant_id, partner_id).await? else {
            return Ok(JourneyFacts::default());
        };
        let ranks = record
            .rank_names
            .iter()
            .filter_map(|(level, name)| {
                let first = record
                    .firsts
                    .get(&crate::state::partner::Fact::RankLevel(*level))?;
                Some((*level, name.clone(), rank_string(&first.rank)))
            })
            .collect();
        Ok(JourneyFacts {
            enrolment: record
                .enrolment
                .as_ref()
                .map(|enrolment| (rank_string(&enrolment.rank), enrolment.sponsor.clone())),
            first_sale: record
                .first_sale
                .as_ref()
                .map(|sale| rank_string(&sale.rank)),
            ranks,
            membership: record
                .membership
                .events()
                .iter()
                .map(|event| {
                    (
                        rank_string(&event.rank),
                        event.change == Change::Assign,
                        event.group.clone(),
                        event.mentor.clone(),
                    )
                })
                .collect(),
        })
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
        let Some(record) = self.partner(tenant_id, partner_id).await? else {
            return Ok(Vec::new());
        };
        let mut contributions: Vec<(String, i64)> = logged_days(&record, bucket)
            .flat_map(|log| &log.0)
            .flat_map(|entry| {
                entry
                    .contributions
                    .iter()
                    .filter(|(logged, amount)| *logged == counter && *amount != 0)
                    .map(|(_, amount)| (rank_string(&entry.rank), *amount))
            })
            .collect();
        contributions.sort();
        Ok(contributions)
    }

    /// The days of `bucket` (lifetime: every day still logged) that count as active days of
    /// `group_id` for the partner, each under the partner's earliest activity event of the day
    /// during membership: (rank, 1), in rank order.
    pub async fn group_active_days(
        &self,
        tenant_id: &str,
        partner_id: &str,
        group_id: &str,
        bucket: Bucket,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let Some(record) = self.partner(tenant_id, partner_id).await? else {
            return Ok(Vec::new());
        };
        Ok(logged_days(&record, bucket)
            .filter_map(|log| {
                log.0
                    .iter()
                    .filter(|entry| entry.activity)
                    .find(|entry| record.membership.group_at(entry.rank.micros) == Some(group_id))
                    .map(|entry| (rank_string(&entry.rank), 1))
            })
            .collect())
    }

    /// Everyone who was ever a member of a group.
    pub async fn group_members_ever(
        &self,
        tenant_id: &str,
        group_id: &str,
    ) -> Result<Vec<String>, StoreError> {
        Ok(self
            .group(tenant_id, group_id)
            .await?
            .map(|group| group.everyone.into_iter().collect())
            .unwrap_or_default())
    }

    /// A partner's direct recruits, sorted.
    pub async fn recruits(
        &self,
        tenant_id: &str,
        partner_id: &str,
    ) -> Result<Vec<String>, StoreError> {
        let mut recruits: Vec<String> = cmd("SMEMBERS")
            .arg(self.tenant(tenant_id).recruits(partner_id))
            .query_async(&mut self.connection.clone())
            .await?;
        recruits.sort();
        Ok(recruits)
    }

    /// The tenant's partners without a sponsor (roots, and partners whose enrolment has not
    /// arrived), sorted: the tops of its teams. Fails with [`StoreError::TooLarge`] beyond
    /// `limit`.
    pub async fn roots(&self, tenant_id: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        let mut roots: Vec<String> = self
            .scan(&self.tenant(tenant_id).sponsors())
            .await?
            .into_iter()
            .filter(|(_, sponsor)| sponsor.is_empty())
            .map(|(partner, _)| partner)
            .collect();
        if roots.len() > limit {
            return Err(StoreError::TooLarge(limit));
        }
        roots.sort();
        Ok(roots)
    }

    /// The tenant's partners: every partner an accepted event named.
    pub async fn partner_count(&self, tenant_id: &str) -> Result<usize, StoreError> {
        Ok(cmd("HLEN")
            .arg(self.tenant(tenant_id).sponsors())
            .query_async(&mut self.connection.clone())
            .await?)
    }

    /// How many partners each level of a team has, the root's level (1) first; fails with
    /// [`StoreError::TooLarge`] beyond `limit` partners.
    pub async fn downline_levels(
        &self,
        tenant_id: &str,
        root: &str,
        limit: usize,
    ) -> Result<Vec<usize>, StoreError> {
        let mut levels = Vec::new();
        self.walk_downline(tenant_id, root, limit, |level| levels.push(level.len()))
            .await?;
        Ok(levels)
    }

    /// A partner and everyone below them in the genealogy, root first; fails with
    /// [`StoreError::TooLarge`] beyond `limit` partners.
    pub async fn downline(
        &self,
        tenant_id: &str,
        root: &str,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let mut all = Vec::new();
        self.walk_downline(tenant_id, root, limit, |level| {
            all.extend(level.iter().cloned());
        })
        .await?;
        Ok(all)
    }

    /// Walks a team level by level (each sorted), root first, giving each level to `visit`;
    /// fails with [`StoreError::TooLarge`] beyond `limit` partners.
    async fn walk_downline(
        &self,
        tenant_id: &str,
        root: &str,
        limit: usize,
        mut visit: impl FnMut(&[String]),
    ) -> Result<(), StoreError> {
        let keys = self.tenant(tenant_id);
        let mut seen: BTreeSet<String> = BTreeSet::from([root.to_owned()]);
        let mut frontier = vec![root.to_owned()];
        while !frontier.is_empty() {
            visit(&frontier);
            let reads = frontier
                .iter()
                .map(|partner| {
                    let mut read = cmd("SMEMBERS");
                    read.arg(keys.recruits(partner));
                    read
                })
                .collect();
            let mut next = Vec::new();
            for children in self.connection.each(reads).await? {
                let mut children: Vec<String> = mentorstream_redis::from_value(children)?;
                children.sort();
                for child in children {
                    // The genealogy is a tree; a cycle in bad data must not loop.
                    if seen.insert(child.clone()) {
                        next.push(child);
                    }
                }
            }
            if seen.len() > limit {
                return Err(StoreError::TooLarge(limit));
            }
            frontier = next;
        }
        Ok(())
    }

    /// Every group of the tenant and its mentor.
    pub async fn groups(&self, tenant_id: &str) -> Result<BTreeMap<String, String>, StoreError> {
        let stored: BTreeMap<String, Vec<u8>> = cmd("HGETALL")
            .arg(self.tenant(tenant_id).groups())
            .query_async(&mut self.connection.clone())
            .await?;
        stored
            .into_iter()
            .map(|(group, bytes)| Ok((group, codec::decode_group(&bytes)?.mentor)))
            .collect()
    }

    /// `subjects` ranked by `counter` summed over `buckets`: best first, ties by id, zeros
    /// left out.
    pub async fn rank(
        &self,
        tenant_id: &str,
        subjects: &[(String, OwnedSubject)],
        counter: Counter,
        buckets: &[Bucket],
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let keys = self.tenant(tenant_id);
        let mut by_kind: BTreeMap<&'static str, Vec<(usize, String)>> = BTreeMap::new();
        let mut totals = vec![0_i64; subjects.len()];
        for (position, (_, subject)) in subjects.iter().enumerate() {
            match subject {
                OwnedSubject::Partner(id) => {
                    by_kind.entry("p").or_default().push((position, id.clone()))
                }
                OwnedSubject::Team(id) => {
                    // Small teams have no record: each is summed.
                    let counters = self.subject_counters(tenant_id, Subject::Team(id)).await?;
                    totals[position] = counters.sum(buckets).get(counter);
                }
                OwnedSubject::Group(id) => {
                    by_kind.entry("g").or_default().push((position, id.clone()))
                }
                OwnedSubject::Tenant => {
                    let counters = self.subject_counters(tenant_id, Subject::Tenant).await?;
                    totals[position] = counters.sum(buckets).get(counter);
                }
            }
        }
        for (kind, wanted) in by_kind {
            let key = match kind {
                "p" => keys.partners(),
                _ => keys.groups(),
            };
            let ids: Vec<String> = wanted.iter().map(|(_, id)| id.clone()).collect();
            for ((position, _), value) in wanted.iter().zip(self.fields(&key, &ids).await?) {
                let Some(bytes) = value else {
                    continue;
                };
                let counters = match kind {
                    "p" => codec::decode_partner(&bytes)?.personal,
                    _ => codec::decode_group(&bytes)?.counters,
                };
                totals[*position] = counters.sum(buckets).get(counter);
            }
        }
        let mut ranked: Vec<(String, i64)> = subjects
            .iter()
            .zip(totals)
            .filter(|(_, total)| *total != 0)
            .map(|((id, _), total)| (id.clone(), total))
            .collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Ok(ranked)
    }

    /// A group's mentor and current mentees.
    pub async fn group_members(
        &self,
        tenant_id: &str,
        group_id: &str,
    ) -> Result<GroupMembers, StoreError> {
        let Some(group) = self.group(tenant_id, group_id).await? else {
            return Ok(GroupMembers::default());
        };
        Ok(GroupMembers {
            mentor_id: (!group.mentor.is_empty()).then(|| group.mentor.clone()),
            mentee_ids: group.mentees().map(str::to_owned).collect(),
        })
    }

    /// Of `mentee_ids`, how many enrolled at least 30 × 24 h before `at` (eligible, docs/spec.md
    /// §6) and how many of those have an active day among `days` (retained).
    pub async fn retention(
        &self,
        tenant_id: &str,
        mentee_ids: &[String],
        at: DateTime<Utc>,
        days: &[Bucket],
    ) -> Result<(usize, usize), StoreError> {
        let key = self.tenant(tenant_id).partners();
        let (mut eligible, mut retained) = (0, 0);
        for value in self.fields(&key, mentee_ids).await?.into_iter().flatten() {
            let record = codec::decode_partner(&value)?;
            if record
                .enrolment
                .as_ref()
                .is_some_and(|enrolment| retention_eligible(enrolment.rank.occurred_at(), at))
            {
                eligible += 1;
                if record.personal.sum(days).get(Counter::ActiveDays) > 0 {
                    retained += 1;
                }
            }
        }
        Ok((eligible, retained))
    }

    /// The progress of a mentee's goals (their counter and value), for those of `goal_ids` the
    /// record knows, in request order.
    pub async fn goal_progress(
        &self,
        tenant_id: &str,
        mentee_id: &str,
        goal_ids: &[String],
    ) -> Result<Vec<(String, Counter, i64)>, StoreError> {
        let Some(record) = self.partner(tenant_id, mentee_id).await? else {
            return Ok(Vec::new());
        };
        Ok(goal_ids
            .iter()
            .filter_map(|goal_id| {
                let goal = record
                    .goals
                    .iter()
                    .find(|goal| goal.spec.goal_id == *goal_id)?;
                Some((goal_id.clone(), goal.spec.counter, goal.progress))
            })
            .collect())
    }

    /// Announces Inactive, once per episode, for the tenant's partners whose latest activity is
    /// at or before `now - after`; returns how many. An episode is named by its latest
    /// activity: a partner is indexed again only when an event moves that forward, so a late
    /// older event starts no new episode. A crash between publishing and unindexing publishes
    /// the same ids again.
    pub async fn sweep_inactive(
        &self,
        tenant_id: &str,
        now: DateTime<Utc>,
        after: chrono::Duration,
    ) -> Result<usize, StoreError> {
        let Some(sink) = &self.signals else {
            return Ok(0);
        };
        let key = self.tenant(tenant_id).idle();
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

    /// Announces GoalMissed for the tenant's goals due at or before `now` whose progress is
    /// short of their target; returns how many. Each due goal is unindexed after it was
    /// looked at (unless set again meanwhile); a crash in between announces the same ids again.
    pub async fn sweep_goals(
        &self,
        tenant_id: &str,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        let Some(sink) = &self.signals else {
            return Ok(0);
        };
        let keys = self.tenant(tenant_id);
        let key = keys.goals();
        let mut announced = 0;
        loop {
            let due = self.due(&key, now.timestamp_micros()).await?;
            if due.is_empty() {
                return Ok(announced);
            }
            let mentees: Vec<String> = due
                .iter()
                .map(|(member, _)| member.split('\u{1c}').next().unwrap_or_default().to_owned())
                .collect();
            let records = self.fields(&keys.partners(), &mentees).await?;
            let mut signals = Vec::new();
            for ((member, _), value) in due.iter().zip(records) {
                let (Some((mentee, goal_id)), Some(bytes)) = (member.split_once('\u{1c}'), value)
                else {
                    continue;
                };
                let record = codec::decode_partner(&bytes)?;
                let goal = record
                    .goals
                    .iter()
                    .find(|goal| goal.spec.goal_id == goal_id);
                if let Some(signal) =
                    goal.and_then(|goal| Signal::goal_missed_of(tenant_id, mentee, goal))
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
}

/// The logged days of a partner in `bucket` (lifetime: every day still logged).
fn logged_days(record: &PartnerRecord, bucket: Bucket) -> impl Iterator<Item = &DayLog> {
    let days: Option<BTreeSet<i32>> = bucket
        .days()
        .map(|days| days.into_iter().map(|day| LocalDay::of(day).0).collect());
    record
        .days
        .iter()
        .filter(move |(day, _)| days.as_ref().is_none_or(|days| days.contains(*day)))
        .map(|(_, log)| log)
}

/// `retention_30d` eligibility (docs/spec.md §6): enrolled at least 30 × 24 h before `at`, in
/// elapsed time, as `days_to_first_sale` counts.
pub fn retention_eligible(enrolled_at: DateTime<Utc>, at: DateTime<Utc>) -> bool {
    at - enrolled_at >= chrono::Duration::days(30)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_counts_a_mentee_from_thirty_times_twenty_four_hours_on() {
        let enrolled = DateTime::from_timestamp(1_790_000_000, 0).expect("time");
        let exactly = enrolled + chrono::Duration::hours(30 * 24);
        assert!(retention_eligible(enrolled, exactly));
        assert!(!retention_eligible(
            enrolled,
            exactly - chrono::Duration::microseconds(1)
        ));
        // 29 days and some hours is not 30 days, whatever the calendar dates say.
        assert!(!retention_eligible(
            enrolled,
            enrolled + chrono::Duration::hours(29 * 24 + 23)
        ));
    }
}
