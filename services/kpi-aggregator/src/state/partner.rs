//! A partner's facts and the rules that fold the partner's events into them (docs/spec.md §6).
//!
//! [`PartnerRecord::apply`] takes one event of the partner, in any arrival order, and reports
//! what it changed beyond the record as [`Effects`]: the partner's own counters (which the
//! writer rolls up to the teams of the upline and the tenant), the counters of the groups the
//! partner's contributions belong to, membership, the genealogy edge, recruits of the
//! sponsor, and announcements. The rules are exact under any order: the record keeps what a
//! later event may need to correct an earlier answer (first facts with their ranks, orders and
//! held refunds, membership events, and every event of the log's days with what it
//! contributed), and corrections are applied as changes to the numbers already counted.

use std::collections::{BTreeMap, BTreeSet};

use super::counts::{Counters, LocalDay};
use super::membership::{Change, MembershipEvent, Timeline};
use super::rank::Rank;
use crate::metric::Counter;

/// One event of a partner, as the rules take it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub rank: Rank,
    /// The local day of `occurred_at` in the tenant's time zone.
    pub day: LocalDay,
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// The partner's enrolment; `sponsor` is empty for a root of the genealogy.
    Enrolled {
        sponsor: String,
    },
    Ping,
    /// An order placed; volume in hundredths.
    Order {
        order_id: String,
        volume: i64,
    },
    Refund {
        order_id: String,
        volume: i64,
    },
    Module {
        module_id: String,
        minutes: i64,
    },
    Attended {
        event_id: String,
    },
    RankReached {
        level: u32,
        name: String,
    },
    /// A session of this partner (as mentor or mentee), counted once per session.
    Session {
        session_id: String,
        counter: Counter,
    },
    /// A rating this partner received as mentor, once per (session, mentee).
    Feedback {
        session_id: String,
        mentee_id: String,
        rating: i64,
    },
    /// This partner, as mentee, assigned to or unassigned from a group.
    Member {
        change: Change,
        group: String,
        mentor: String,
    },
    /// A development goal of this partner, as mentee.
    GoalSet(GoalSpec),
}

impl EventKind {
    /// Events by the partner themselves (the activity topic): they make active days.
    pub fn is_activity(&self) -> bool {
        matches!(
            self,
            Self::Enrolled { .. }
                | Self::Ping
                | Self::Order { .. }
                | Self::Refund { .. }
                | Self::Module { .. }
                | Self::Attended { .. }
                | Self::RankReached { .. }
        )
    }
}

/// A goal as set: `counter` summed over the contributions from `start` to `due` (micros,
/// both included) should reach `target` (the counter's units).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoalSpec {
    pub goal_id: String,
    pub plan_id: String,
    pub counter: Counter,
    pub target: i64,
    pub start: i64,
    pub due: i64,
}

/// A goal with the rank of the GoalSet that set it (the latest counts) and its progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Goal {
    pub spec: GoalSpec,
    pub rank: Rank,
    pub progress: i64,
}

/// What a "first" fact is the first of.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fact {
    Module(String),
    Attended(String),
    Session(String),
    Feedback {
        session_id: String,
        mentee_id: String,
    },
    RankLevel(u32),
}

/// The earliest event of a fact and what it counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct First {
    pub rank: Rank,
    pub day: LocalDay,
    pub amounts: Vec<(Counter, i64)>,
}

/// The earliest enrolment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolment {
    pub rank: Rank,
    pub day: LocalDay,
    /// Empty for a root.
    pub sponsor: String,
}

/// The earliest placement of an order id, and what was refunded of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub rank: Rank,
    pub day: LocalDay,
    pub volume: i64,
    pub refunded: i64,
}

impl Order {
    /// What the order counts: its volume net of refunds, never below zero.
    fn net(&self) -> i64 {
        self.volume - self.volume.min(self.refunded)
    }
}

/// The first sale: the earliest order placed, whatever its refunds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sale {
    pub rank: Rank,
    pub order_id: String,
    pub volume: i64,
}

/// One entry of the contribution log: an event of the partner (or, `event` false, a change
/// caused by another partner's event, a recruit's enrolment) and what it contributes to the
/// partner's counters now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub rank: Rank,
    pub event: bool,
    pub activity: bool,
    pub contributions: Vec<(Counter, i64)>,
}

/// The entries of one local day, in rank order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DayLog(pub Vec<LogEntry>);

impl DayLog {
    fn find(&self, rank: &Rank) -> Result<usize, usize> {
        self.0.binary_search_by(|entry| entry.rank.cmp(rank))
    }

    /// The earliest activity event of the day.
    pub fn first_activity(&self) -> Option<&Rank> {
        self.0
            .iter()
            .find(|entry| entry.activity)
            .map(|entry| &entry.rank)
    }

    /// The groups that count the day as an active day of this mentee: those in which at least
    /// one of the day's activity events happened.
    fn groups<'a>(&self, timeline: &'a Timeline) -> BTreeSet<&'a str> {
        self.0
            .iter()
            .filter(|entry| entry.activity)
            .filter_map(|entry| timeline.group_at(entry.rank.micros))
            .collect()
    }
}

/// Something worth announcing, decided by the rules; the writer turns it into a signal whose
/// id names the fact, so a repeated or corrected announcement keeps its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Announcement {
    FirstSale {
        enrolled: Rank,
        sale: Sale,
    },
    RankReached {
        enrolled: Rank,
        level: u32,
        name: String,
        reached: Rank,
    },
    GoalAchieved {
        goal: GoalSpec,
        value: i64,
        rank: Rank,
    },
}

/// A change of a group's current members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberChange {
    pub group: String,
    pub mentor: String,
    pub amount: i64,
}

/// A recruit counted for (+1) or taken back from (−1) a sponsor: a change of the sponsor's
/// own counters, caused by the recruit's enrolment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recruit {
    pub sponsor: String,
    pub rank: Rank,
    pub day: LocalDay,
    pub amount: i64,
}

/// What applying events changed beyond the partner's record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effects {
    /// The change of the partner's own counters: the teams of the upline and the tenant.
    pub personal: Counters,
    /// Changes of groups' counters by the partner's contributions.
    pub groups: BTreeMap<String, Counters>,
    pub members: Vec<MemberChange>,
    /// Groups the partner was assigned to, with their mentors.
    pub joined: BTreeSet<(String, String)>,
    /// The genealogy edge moved: from the old sponsor to the new one (empty: none).
    pub sponsor: Option<(String, String)>,
    pub recruits: Vec<Recruit>,
    pub announcements: Vec<Announcement>,
    /// Goals set, with their due time (micros), for the GoalMissed sweep.
    pub goals_due: Vec<(String, i64)>,
    /// The partner's latest activity moved to this event.
    pub latest_activity: Option<Rank>,
}

/// Everything the rules keep about one partner.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartnerRecord {
    pub enrolment: Option<Enrolment>,
    pub first_sale: Option<Sale>,
    pub firsts: BTreeMap<Fact, First>,
    /// The name of each rank level, from the event that first reached it.
    pub rank_names: BTreeMap<u32, String>,
    pub orders: BTreeMap<String, Order>,
    /// Refunds of orders not seen yet: order id → volume.
    pub held_refunds: BTreeMap<String, i64>,
    pub membership: Timeline,
    pub goals: Vec<Goal>,
    /// The contribution log by local day.
    pub days: BTreeMap<i32, DayLog>,
    pub latest_activity: Option<Rank>,
    /// The partner's own counters.
    pub personal: Counters,
}

/// Days of the contribution log kept before the newest logged day: Explain answers the last
/// 100 days, and no event can come later than a tenant's allowed lateness (35 days by
/// default), which must stay below this.
pub const LOG_DAYS: i32 = 100;

/// Feedback counts for the mentor only, never as a mentee's contribution to a group; active
/// days reach groups by their own rule ([`DayLog::groups`]).
fn reaches_groups(counter: Counter) -> bool {
    !matches!(
        counter,
        Counter::FeedbackSum | Counter::FeedbackCount | Counter::ActiveDays
    )
}

/// What one apply learnt along the way, for the announcements at its end.
#[derive(Default)]
struct Changed {
    sale: bool,
    enrolment: bool,
    levels: Vec<u32>,
}

impl PartnerRecord {
    /// Applies one event of this partner; `false` (and nothing changes) when the record has
    /// seen the event before: a record delivered twice counts once.
    pub fn apply(&mut self, event: &Event, effects: &mut Effects) -> bool {
        let log = self.days.entry(event.day.0).or_default();
        let found = log.find(&event.rank);
        if found.is_ok_and(|at| log.0[at].event) {
            return false;
        }
        let activity = event.kind.is_activity();
        // The day as it was, for the active-day rules.
        let earliest = log.first_activity().cloned();
        let groups: BTreeSet<String> = owned(log.groups(&self.membership));
        match found {
            // A recruit's contribution under this rank: ranks are unique per event, so this
            // cannot happen for real events, but the entry becomes the event's all the same.
            Ok(at) => {
                log.0[at].event = true;
                log.0[at].activity = activity;
            }
            Err(at) => log.0.insert(
                at,
                LogEntry {
                    rank: event.rank.clone(),
                    event: true,
                    activity,
                    contributions: Vec::new(),
                },
            ),
        }
        if activity {
            self.activity(event, earliest, &groups, effects);
        }
        let mut changed = Changed::default();
        self.fold(event, &mut changed, effects);
        self.announce(&changed, effects);
        true
    }

    /// Forgets the log's days more than [`LOG_DAYS`] before its newest day. The reference is
    /// the partner's own event time, not the clock, so a replay of old history keeps what it
    /// needs.
    pub fn prune_log(&mut self) {
        if let Some(newest) = self.days.keys().next_back().copied() {
            self.days = self.days.split_off(&(newest - LOG_DAYS));
        }
    }

    /// A recruit's enrolment counted for this sponsor (`amount` 1) or taken back (−1), under
    /// the recruit's enrolment rank.
    pub fn recruit(&mut self, rank: &Rank, day: LocalDay, amount: i64, effects: &mut Effects) {
        self.contribute(rank, day, Counter::Recruits, amount, effects);
    }

    /// Active days and the latest activity of an activity event just logged, given the day's
    /// earliest activity and the groups that counted the day before it: the day counts once,
    /// under its earliest activity event; a group counts it when one of the day's activity
    /// events happened in it.
    fn activity(
        &mut self,
        event: &Event,
        earliest: Option<Rank>,
        groups: &BTreeSet<String>,
        effects: &mut Effects,
    ) {
        if self
            .latest_activity
            .as_ref()
            .is_none_or(|latest| event.rank > *latest)
        {
            self.latest_activity = Some(event.rank.clone());
            effects.latest_activity = Some(event.rank.clone());
        }
        match earliest {
            None => self.contribute(&event.rank, event.day, Counter::ActiveDays, 1, effects),
            Some(earliest) if event.rank < earliest => {
                self.contribute(&earliest, event.day, Counter::ActiveDays, -1, effects);
                self.contribute(&event.rank, event.day, Counter::ActiveDays, 1, effects);
            }
            Some(_) => {}
        }
        let now = owned(self.days[&event.day.0].groups(&self.membership));
        group_days(groups, &now, event.day, effects);
    }

    fn fold(&mut self, event: &Event, changed: &mut Changed, effects: &mut Effects) {
        let (rank, day) = (&event.rank, event.day);
        match &event.kind {
            EventKind::Enrolled { sponsor } => self.enrol(sponsor, rank, day, changed, effects),
            EventKind::Ping => {}
            EventKind::Order { order_id, volume } => {
                self.order(order_id, *volume, rank, day, changed, effects);
            }
            EventKind::Refund { order_id, volume } => self.refund(order_id, *volume, effects),
            EventKind::Module { module_id, minutes } => {
                let amounts = vec![
                    (Counter::ModulesCompleted, 1),
                    (Counter::LearningMinutes, *minutes),
                ];
                self.first(Fact::Module(module_id.clone()), rank, day, amounts, effects);
            }
            EventKind::Attended { event_id } => {
                let amounts = vec![(Counter::EventsAttended, 1)];
                self.first(
                    Fact::Attended(event_id.clone()),
                    rank,
                    day,
                    amounts,
                    effects,
                );
            }
            EventKind::RankReached { level, name } => {
                let amounts = vec![(Counter::RankAdvancements, 1)];
                if self.first(Fact::RankLevel(*level), rank, day, amounts, effects) {
                    self.rank_names.insert(*level, name.clone());
                    changed.levels.push(*level);
                }
            }
            EventKind::Session {
                session_id,
                counter,
            } => {
                let fact = Fact::Session(session_id.clone());
                self.first(fact, rank, day, vec![(*counter, 1)], effects);
            }
            EventKind::Feedback {
                session_id,
                mentee_id,
                rating,
            } => {
                let fact = Fact::Feedback {
                    session_id: session_id.clone(),
                    mentee_id: mentee_id.clone(),
                };
                let amounts = vec![(Counter::FeedbackSum, *rating), (Counter::FeedbackCount, 1)];
                self.first(fact, rank, day, amounts, effects);
            }
            EventKind::Member {
                change,
                group,
                mentor,
            } => self.member(rank, day, *change, group, mentor, effects),
            EventKind::GoalSet(spec) => self.goal(spec, rank, effects),
        }
    }

    /// Counts `amount` of `counter` for the partner, caused by the event of `rank` on `day`:
    /// the personal counters, the log, the group of the moment and the goals whose period
    /// covers it.
    fn contribute(
        &mut self,
        rank: &Rank,
        day: LocalDay,
        counter: Counter,
        amount: i64,
        effects: &mut Effects,
    ) {
        if amount == 0 {
            return;
        }
        self.personal.add(day, counter, amount);
        effects.personal.add(day, counter, amount);
        self.log(rank, day, counter, amount);
        if reaches_groups(counter)
            && let Some(group) = self.membership.group_at(rank.micros)
        {
            effects
                .groups
                .entry(group.to_owned())
                .or_default()
                .add(day, counter, amount);
        }
        for goal in &mut self.goals {
            let spec = &goal.spec;
            if spec.counter == counter && (spec.start..=spec.due).contains(&rank.micros) {
                let before = goal.progress;
                goal.progress += amount;
                if before < spec.target && goal.progress >= spec.target {
                    effects.announcements.push(Announcement::GoalAchieved {
                        goal: spec.clone(),
                        value: goal.progress,
                        rank: rank.clone(),
                    });
                }
            }
        }
    }

    fn log(&mut self, rank: &Rank, day: LocalDay, counter: Counter, amount: i64) {
        let log = self.days.entry(day.0).or_default();
        let at = match log.find(rank) {
            Ok(at) => at,
            Err(at) => {
                let entry = LogEntry {
                    rank: rank.clone(),
                    event: false,
                    activity: false,
                    contributions: Vec::new(),
                };
                log.0.insert(at, entry);
                at
            }
        };
        let entry = &mut log.0[at];
        match entry
            .contributions
            .iter_mut()
            .find(|(logged, _)| *logged == counter)
        {
            Some((_, total)) => *total += amount,
            None => entry.contributions.push((counter, amount)),
        }
        entry.contributions.retain(|(_, total)| *total != 0);
        if !entry.event && entry.contributions.is_empty() {
            log.0.remove(at);
        }
        if log.0.is_empty() {
            self.days.remove(&day.0);
        }
    }

    /// Keeps the earliest event of a fact; when an earlier one arrives, what the later one
    /// counted moves to it. `true` when this event is now the fact's first.
    fn first(
        &mut self,
        fact: Fact,
        rank: &Rank,
        day: LocalDay,
        amounts: Vec<(Counter, i64)>,
        effects: &mut Effects,
    ) -> bool {
        if let Some(old) = self.firsts.get(&fact) {
            if old.rank <= *rank {
                return false;
            }
            let old = old.clone();
            for (counter, amount) in &old.amounts {
                self.contribute(&old.rank, old.day, *counter, -amount, effects);
            }
        }
        for (counter, amount) in &amounts {
            self.contribute(rank, day, *counter, *amount, effects);
        }
        self.firsts.insert(
            fact,
            First {
                rank: rank.clone(),
                day,
                amounts,
            },
        );
        true
    }

    /// The earliest enrolment gives the sponsor (the genealogy edge) and the sponsor's
    /// recruit.
    fn enrol(
        &mut self,
        sponsor: &str,
        rank: &Rank,
        day: LocalDay,
        changed: &mut Changed,
        effects: &mut Effects,
    ) {
        let old = self.enrolment.take();
        if let Some(old) = &old {
            if old.rank <= *rank {
                self.enrolment = Some(old.clone());
                return;
            }
            if !old.sponsor.is_empty() {
                effects.recruits.push(Recruit {
                    sponsor: old.sponsor.clone(),
                    rank: old.rank.clone(),
                    day: old.day,
                    amount: -1,
                });
            }
        }
        if !sponsor.is_empty() {
            effects.recruits.push(Recruit {
                sponsor: sponsor.to_owned(),
                rank: rank.clone(),
                day,
                amount: 1,
            });
        }
        let old_sponsor = old.map(|old| old.sponsor).unwrap_or_default();
        if old_sponsor != sponsor {
            effects.sponsor = Some((old_sponsor, sponsor.to_owned()));
        }
        self.enrolment = Some(Enrolment {
            rank: rank.clone(),
            day,
            sponsor: sponsor.to_owned(),
        });
        changed.enrolment = true;
    }

    /// The earliest placement of an order id counts its order and its volume net of refunds.
    fn order(
        &mut self,
        order_id: &str,
        volume: i64,
        rank: &Rank,
        day: LocalDay,
        changed: &mut Changed,
        effects: &mut Effects,
    ) {
        let refunded = match self.orders.get(order_id) {
            Some(old) if old.rank <= *rank => return,
            Some(old) => {
                let old = old.clone();
                self.contribute(&old.rank, old.day, Counter::Orders, -1, effects);
                self.contribute(
                    &old.rank,
                    old.day,
                    Counter::SalesVolume,
                    -old.net(),
                    effects,
                );
                old.refunded
            }
            None => self.held_refunds.remove(order_id).unwrap_or(0),
        };
        let order = Order {
            rank: rank.clone(),
            day,
            volume,
            refunded,
        };
        self.contribute(rank, day, Counter::Orders, 1, effects);
        self.contribute(rank, day, Counter::SalesVolume, order.net(), effects);
        self.orders.insert(order_id.to_owned(), order);
        if self
            .first_sale
            .as_ref()
            .is_none_or(|sale| *rank < sale.rank)
        {
            self.first_sale = Some(Sale {
                rank: rank.clone(),
                order_id: order_id.to_owned(),
                volume,
            });
            changed.sale = true;
        }
    }

    /// A refund subtracts in its order's buckets; before its order arrives it is held.
    fn refund(&mut self, order_id: &str, volume: i64, effects: &mut Effects) {
        let Some(order) = self.orders.get_mut(order_id) else {
            *self.held_refunds.entry(order_id.to_owned()).or_default() += volume;
            return;
        };
        let before = order.net();
        order.refunded += volume;
        let (change, rank, day) = (order.net() - before, order.rank.clone(), order.day);
        self.contribute(&rank, day, Counter::SalesVolume, change, effects);
    }

    /// A membership event: every logged contribution whose group it changes moves from the
    /// old group to the new one, and so does every day it changes the groups of; a change of
    /// the current assignment changes both groups' members.
    fn member(
        &mut self,
        rank: &Rank,
        day: LocalDay,
        change: Change,
        group: &str,
        mentor: &str,
        effects: &mut Effects,
    ) {
        let before = self.membership.clone();
        self.membership.insert(MembershipEvent {
            rank: rank.clone(),
            change,
            group: group.to_owned(),
            mentor: mentor.to_owned(),
        });
        if change == Change::Assign {
            effects.joined.insert((group.to_owned(), mentor.to_owned()));
        }
        // Contributions at or after the event's instant lie on its local day or later.
        for (day, log) in self.days.range(day.0..) {
            let day = LocalDay(*day);
            for entry in &log.0 {
                let old = before.group_at(entry.rank.micros);
                let new = self.membership.group_at(entry.rank.micros);
                if old == new {
                    continue;
                }
                for (counter, amount) in &entry.contributions {
                    if !reaches_groups(*counter) {
                        continue;
                    }
                    for (group, sign) in [(old, -1), (new, 1)] {
                        if let Some(group) = group {
                            effects.groups.entry(group.to_owned()).or_default().add(
                                day,
                                *counter,
                                sign * amount,
                            );
                        }
                    }
                }
            }
            group_days(
                &owned(log.groups(&before)),
                &owned(log.groups(&self.membership)),
                day,
                effects,
            );
        }
        let (was, is) = (before.at(None), self.membership.at(None));
        if was.map(|event| &event.group) != is.map(|event| &event.group) {
            for (event, amount) in [(was, -1), (is, 1)] {
                if let Some(event) = event {
                    effects.members.push(MemberChange {
                        group: event.group.clone(),
                        mentor: event.mentor.clone(),
                        amount,
                    });
                }
            }
        }
    }

    /// The latest GoalSet of a goal id counts; its progress is the log's contributions of its
    /// counter inside its period, and moves with every later one.
    fn goal(&mut self, spec: &GoalSpec, rank: &Rank, effects: &mut Effects) {
        if let Some(existing) = self
            .goals
            .iter()
            .find(|goal| goal.spec.goal_id == spec.goal_id)
            && existing.rank >= *rank
        {
            return;
        }
        self.goals.retain(|goal| goal.spec.goal_id != spec.goal_id);
        let progress = self
            .days
            .values()
            .flat_map(|log| &log.0)
            .filter(|entry| (spec.start..=spec.due).contains(&entry.rank.micros))
            .flat_map(|entry| &entry.contributions)
            .filter(|(counter, _)| *counter == spec.counter)
            .map(|(_, amount)| amount)
            .sum();
        if progress >= spec.target && spec.target > 0 {
            effects.announcements.push(Announcement::GoalAchieved {
                goal: spec.clone(),
                value: progress,
                rank: rank.clone(),
            });
        }
        self.goals.push(Goal {
            spec: spec.clone(),
            rank: rank.clone(),
            progress,
        });
        effects.goals_due.push((spec.goal_id.clone(), spec.due));
    }

    /// The first sale and each rank level first reached are announced as soon as both the
    /// fact and the enrolment (which the days count from) are known, and again when either
    /// moves to an earlier event.
    fn announce(&self, changed: &Changed, effects: &mut Effects) {
        let Some(enrolment) = &self.enrolment else {
            return;
        };
        if (changed.sale || changed.enrolment)
            && let Some(sale) = &self.first_sale
        {
            effects.announcements.push(Announcement::FirstSale {
                enrolled: enrolment.rank.clone(),
                sale: sale.clone(),
            });
        }
        let levels: Vec<u32> = if changed.enrolment {
            self.rank_names.keys().copied().collect()
        } else {
            changed.levels.clone()
        };
        for level in levels {
            if let Some(first) = self.firsts.get(&Fact::RankLevel(level)) {
                effects.announcements.push(Announcement::RankReached {
                    enrolled: enrolment.rank.clone(),
                    level,
                    name: self.rank_names.get(&level).cloned().unwrap_or_default(),
                    reached: first.rank.clone(),
                });
            }
        }
    }
}

fn owned(groups: BTreeSet<&str>) -> BTreeSet<String> {
    groups.into_iter().map(str::to_owned).collect()
}

/// A day's active-day changes of groups: −1 for groups that no longer count it, +1 for groups
/// that newly do.
fn group_days(
    before: &BTreeSet<String>,
    after: &BTreeSet<String>,
    day: LocalDay,
    effects: &mut Effects,
) {
    for (groups, others, sign) in [(before, after, -1), (after, before, 1)] {
        for group in groups.difference(others) {
            effects
                .groups
                .entry(group.clone())
                .or_default()
                .add(day, Counter::ActiveDays, sign);
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, NaiveDate, TimeZone as _, Utc};
    use proptest::prelude::*;

    use super::*;
    use crate::calendar::Bucket;

    const TZ: chrono_tz::Tz = chrono_tz::Europe::Moscow;

    /// An event at a local time of the tenant (Moscow) on 2026-11-`day`.
    fn at(day: u32, hour: u32, minute: u32, id: &str, kind: EventKind) -> Event {
        let local = TZ
            .with_ymd_and_hms(2026, 11, day, hour, minute, 0)
            .single()
            .expect("local time");
        let occurred_at: DateTime<Utc> = local.with_timezone(&Utc);
        let source = if kind.is_activity() {
            "crm"
        } else {
            "mentorship"
        };
        Event {
            rank: Rank::new(occurred_at, source, id),
            day: LocalDay::of(local.date_naive()),
            kind,
        }
    }

    fn assign(group: &str) -> EventKind {
        EventKind::Member {
            change: Change::Assign,
            group: group.into(),
            mentor: format!("mentor-{group}"),
        }
    }

    fn unassign(group: &str) -> EventKind {
        EventKind::Member {
            change: Change::Unassign,
            group: group.into(),
            mentor: format!("mentor-{group}"),
        }
    }

    fn order(id: &str, volume: i64) -> EventKind {
        EventKind::Order {
            order_id: id.into(),
            volume,
        }
    }

    fn refund(id: &str, volume: i64) -> EventKind {
        EventKind::Refund {
            order_id: id.into(),
            volume,
        }
    }

    /// Applies `events` in order to a new record: the record and the sum of the effects.
    fn run(events: &[Event]) -> (PartnerRecord, Effects) {
        let mut record = PartnerRecord::default();
        let mut total = Effects::default();
        for event in events {
            let mut effects = Effects::default();
            record.apply(event, &mut effects);
            total.personal.add_all(&effects.personal, 1);
            for (group, counters) in effects.groups {
                total.groups.entry(group).or_default().add_all(&counters, 1);
            }
            total.groups.retain(|_, counters| !counters.is_empty());
            total.members.extend(effects.members);
            total.recruits.extend(effects.recruits);
            total.announcements.extend(effects.announcements);
            if effects.sponsor.is_some() {
                total.sponsor = effects.sponsor;
            }
        }
        (record, total)
    }

    fn day_of(counters: &Counters, day: u32, counter: Counter) -> i64 {
        let date = NaiveDate::from_ymd_opt(2026, 11, day).expect("date");
        counters.bucket(Bucket::Day(date)).get(counter)
    }

    fn life(counters: &Counters, counter: Counter) -> i64 {
        counters.life.get(counter)
    }

    #[test]
    fn a_record_delivered_twice_counts_once() {
        let sale = at(2, 10, 0, "o-1", order("1001", 4950));
        let (record, effects) = run(&[sale.clone(), sale]);
        assert_eq!(life(&record.personal, Counter::Orders), 1);
        assert_eq!(life(&record.personal, Counter::SalesVolume), 4950);
        assert_eq!(life(&record.personal, Counter::ActiveDays), 1);
        assert_eq!(effects.personal, record.personal);
    }

    #[test]
    fn a_refund_subtracts_in_its_orders_bucket_whenever_it_arrives() {
        let placed = at(2, 10, 0, "o-1", order("1001", 4950));
        let refunded = at(5, 10, 0, "r-1", refund("1001", 1000));
        for events in [[placed.clone(), refunded.clone()], [refunded, placed]] {
            let (record, _) = run(&events);
            assert_eq!(day_of(&record.personal, 2, Counter::SalesVolume), 3950);
            assert_eq!(day_of(&record.personal, 5, Counter::SalesVolume), 0);
            assert_eq!(
                life(&record.personal, Counter::Orders),
                1,
                "refunds keep the order"
            );
            assert_eq!(life(&record.personal, Counter::ActiveDays), 2);
        }
        // Refunds beyond the volume stop at zero.
        let (record, _) = run(&[
            at(2, 10, 0, "o-1", order("1001", 500)),
            at(3, 10, 0, "r-1", refund("1001", 400)),
            at(3, 11, 0, "r-2", refund("1001", 400)),
        ]);
        assert_eq!(life(&record.personal, Counter::SalesVolume), 0);
    }

    #[test]
    fn an_earlier_first_moves_the_count_to_its_bucket() {
        let module = |minutes| EventKind::Module {
            module_id: "m-1".into(),
            minutes,
        };
        let (record, _) = run(&[
            at(9, 12, 0, "late", module(30)),
            at(3, 12, 0, "early", module(25)),
        ]);
        assert_eq!(day_of(&record.personal, 9, Counter::ModulesCompleted), 0);
        assert_eq!(day_of(&record.personal, 3, Counter::ModulesCompleted), 1);
        assert_eq!(life(&record.personal, Counter::LearningMinutes), 25);
        assert_eq!(
            life(&record.personal, Counter::ActiveDays),
            2,
            "both days were active"
        );
    }

    #[test]
    fn an_active_day_counts_once_under_its_earliest_event() {
        let (record, _) = run(&[
            at(2, 18, 0, "b", EventKind::Ping),
            at(2, 9, 0, "a", EventKind::Ping),
            at(2, 20, 0, "c", EventKind::Ping),
        ]);
        assert_eq!(life(&record.personal, Counter::ActiveDays), 1);
        let log =
            &record.days[&LocalDay::of(NaiveDate::from_ymd_opt(2026, 11, 2).expect("date")).0];
        let counted: Vec<&str> = log
            .0
            .iter()
            .filter(|entry| !entry.contributions.is_empty())
            .map(|entry| entry.rank.id.as_str())
            .collect();
        assert_eq!(counted, vec!["a"]);
        assert_eq!(
            record.latest_activity.as_ref().map(|rank| rank.id.as_str()),
            Some("c")
        );
    }

    #[test]
    fn the_log_keeps_a_hundred_days_before_its_newest() {
        let mut record = PartnerRecord::default();
        let mut effects = Effects::default();
        for day in [1, 2, 30] {
            record.apply(
                &at(day, 10, 0, &format!("p{day}"), EventKind::Ping),
                &mut effects,
            );
        }
        let mut late = at(30, 10, 0, "x", EventKind::Ping);
        late.day = LocalDay(late.day.0 + 90);
        late.rank.micros += 90 * 86_400_000_000;
        record.apply(&late, &mut effects);
        record.prune_log();
        let kept: Vec<i32> = record.days.keys().map(|day| day - late.day.0).collect();
        assert_eq!(
            kept,
            vec![-90, 0],
            "days 1 and 2 are more than 100 days older"
        );
        assert_eq!(
            life(&record.personal, Counter::ActiveDays),
            4,
            "counters stay"
        );
    }

    #[test]
    fn mentorship_events_make_no_active_day() {
        let session = EventKind::Session {
            session_id: "s-1".into(),
            counter: Counter::SessionsCompleted,
        };
        let (record, _) = run(&[at(2, 9, 0, "s", session)]);
        assert_eq!(life(&record.personal, Counter::SessionsCompleted), 1);
        assert_eq!(life(&record.personal, Counter::ActiveDays), 0);
        assert_eq!(record.latest_activity, None);
    }

    #[test]
    fn a_group_counts_a_day_with_any_event_during_membership() {
        // The defect of issue 16: active at 02:55, assigned at 09:45, active again at 21:16.
        let events = [
            at(2, 2, 55, "early", EventKind::Ping),
            at(2, 9, 45, "assign", assign("g1")),
            at(2, 21, 16, "late", EventKind::Ping),
        ];
        for order in permutations(events.len()) {
            let shuffled: Vec<Event> = order.iter().map(|at| events[*at].clone()).collect();
            let (record, effects) = run(&shuffled);
            assert_eq!(life(&record.personal, Counter::ActiveDays), 1, "{order:?}");
            assert_eq!(
                day_of(&effects.groups["g1"], 2, Counter::ActiveDays),
                1,
                "{order:?}"
            );
        }
    }

    #[test]
    fn on_a_transfer_day_both_groups_can_count_it() {
        let events = [
            at(1, 8, 0, "assign-1", assign("g1")),
            at(2, 9, 0, "morning", EventKind::Ping),
            at(2, 12, 0, "out", unassign("g1")),
            at(2, 12, 0, "in", assign("g2")),
            at(2, 15, 0, "afternoon", EventKind::Ping),
            at(3, 15, 0, "next", order("1001", 700)),
        ];
        for order in permutations(events.len()) {
            let shuffled: Vec<Event> = order.iter().map(|at| events[*at].clone()).collect();
            let (record, effects) = run(&shuffled);
            let groups = &effects.groups;
            assert_eq!(day_of(&groups["g1"], 2, Counter::ActiveDays), 1);
            assert_eq!(day_of(&groups["g2"], 2, Counter::ActiveDays), 1);
            assert_eq!(life(&groups["g1"], Counter::ActiveDays), 1);
            assert_eq!(life(&groups["g2"], Counter::ActiveDays), 2);
            assert_eq!(life(&groups["g2"], Counter::SalesVolume), 700);
            assert!(
                !groups["g1"]
                    .life
                    .iter()
                    .any(|(counter, value)| { counter == Counter::SalesVolume && value != 0 })
            );
            assert_eq!(life(&record.personal, Counter::ActiveDays), 2);
            let members: i64 = effects
                .members
                .iter()
                .filter(|change| change.group == "g2")
                .map(|change| change.amount)
                .sum();
            assert_eq!(members, 1, "the mentee ends in g2");
        }
    }

    #[test]
    fn a_late_assignment_takes_the_contributions_it_covers() {
        let (_, effects) = run(&[
            at(2, 10, 0, "before", order("1", 100)),
            at(4, 10, 0, "during", order("2", 200)),
            at(3, 0, 0, "assign", assign("g1")),
        ]);
        assert_eq!(life(&effects.groups["g1"], Counter::SalesVolume), 200);
        assert_eq!(life(&effects.groups["g1"], Counter::Orders), 1);
        assert_eq!(life(&effects.groups["g1"], Counter::ActiveDays), 1);
    }

    #[test]
    fn feedback_is_the_mentors_own() {
        let feedback = EventKind::Feedback {
            session_id: "s-1".into(),
            mentee_id: "m-1".into(),
            rating: 4,
        };
        let (record, effects) = run(&[
            at(1, 8, 0, "assign", assign("g9")),
            at(2, 9, 0, "fb", feedback.clone()),
            at(2, 9, 5, "fb-again", feedback),
        ]);
        assert_eq!(life(&record.personal, Counter::FeedbackSum), 4);
        assert_eq!(life(&record.personal, Counter::FeedbackCount), 1);
        assert!(!effects.groups.contains_key("g9"));
    }

    #[test]
    fn the_earliest_enrolment_names_the_sponsor() {
        let enrolled = |sponsor: &str| EventKind::Enrolled {
            sponsor: sponsor.into(),
        };
        let (record, effects) = run(&[
            at(5, 10, 0, "later", enrolled("s-late")),
            at(3, 10, 0, "earlier", enrolled("s-early")),
            at(4, 10, 0, "between", enrolled("s-other")),
        ]);
        let enrolment = record.enrolment.expect("enrolled");
        assert_eq!(enrolment.sponsor, "s-early");
        assert_eq!(effects.sponsor, Some(("s-late".into(), "s-early".into())));
        let net = |sponsor: &str| -> i64 {
            effects
                .recruits
                .iter()
                .filter(|recruit| recruit.sponsor == sponsor)
                .map(|recruit| recruit.amount)
                .sum()
        };
        assert_eq!((net("s-late"), net("s-early"), net("s-other")), (0, 1, 0));
    }

    #[test]
    fn first_sale_and_ranks_are_announced_once_the_enrolment_is_known() {
        let silver = EventKind::RankReached {
            level: 2,
            name: "Silver".into(),
        };
        let facts = [
            at(6, 10, 0, "sale", order("1", 100)),
            at(7, 10, 0, "rank", silver),
        ];
        let (_, effects) = run(&facts);
        assert!(effects.announcements.is_empty(), "no enrolment yet");
        let enrolment = at(
            1,
            10,
            0,
            "enrol",
            EventKind::Enrolled {
                sponsor: String::new(),
            },
        );
        let (_, effects) = run(&[facts[0].clone(), facts[1].clone(), enrolment]);
        let kinds: Vec<&str> = effects
            .announcements
            .iter()
            .map(|announcement| match announcement {
                Announcement::FirstSale { .. } => "sale",
                Announcement::RankReached { .. } => "rank",
                Announcement::GoalAchieved { .. } => "goal",
            })
            .collect();
        assert_eq!(kinds, vec!["sale", "rank"]);
    }

    #[test]
    fn a_goal_counts_its_period_from_before_and_after_it_was_set() {
        let start = at(2, 0, 0, "x", EventKind::Ping).rank.micros;
        let due = at(9, 0, 0, "x", EventKind::Ping).rank.micros;
        let goal = EventKind::GoalSet(GoalSpec {
            goal_id: "goal-1".into(),
            plan_id: "plan-1".into(),
            counter: Counter::SalesVolume,
            target: 300,
            start,
            due,
        });
        let (record, effects) = run(&[
            at(1, 10, 0, "outside", order("1", 1000)),
            at(3, 10, 0, "inside", order("2", 200)),
            at(3, 11, 0, "set", goal),
            at(4, 10, 0, "reaches", order("3", 150)),
        ]);
        assert_eq!(record.goals[0].progress, 350);
        let achieved: Vec<(i64, &str)> = effects
            .announcements
            .iter()
            .filter_map(|announcement| match announcement {
                Announcement::GoalAchieved { value, rank, .. } => Some((*value, rank.id.as_str())),
                _ => None,
            })
            .collect();
        assert_eq!(achieved, vec![(350, "reaches")]);
    }

    /// Every order of `n` items (n ≤ 6).
    fn permutations(n: usize) -> Vec<Vec<usize>> {
        if n == 0 {
            return vec![Vec::new()];
        }
        let mut all = Vec::new();
        for rest in permutations(n - 1) {
            for at in 0..=rest.len() {
                let mut order = rest.clone();
                order.insert(at, n - 1);
                all.push(order);
            }
        }
        all
    }

    fn any_event() -> impl Strategy<Value = Event> {
        let kind = prop_oneof![
            Just(EventKind::Ping),
            (0..4u8, 1..5_000i64).prop_map(|(id, volume)| order(&format!("o{id}"), volume)),
            (0..4u8, 1..3_000i64).prop_map(|(id, volume)| refund(&format!("o{id}"), volume)),
            (0..3u8, 5..60i64).prop_map(|(id, minutes)| EventKind::Module {
                module_id: format!("m{id}"),
                minutes
            }),
            (0..3u8).prop_map(|group| assign(&format!("g{group}"))),
            (0..3u8).prop_map(|group| unassign(&format!("g{group}"))),
            (0..2u8).prop_map(|sponsor| EventKind::Enrolled {
                sponsor: format!("s{sponsor}")
            }),
        ];
        (1..6u32, 0..24u32, 0..60u32, kind).prop_map(|(day, hour, minute, kind)| {
            let id = format!("{day}-{hour}-{minute}-{kind:?}");
            at(day, hour, minute, &id, kind)
        })
    }

    proptest! {
        /// Every number is a function of the set of events: any arrival order, with
        /// repetitions, gives the same counters, group counters and recruits.
        #[test]
        fn numbers_depend_on_the_set_of_events_only(
            events in proptest::collection::vec(any_event(), 1..14),
            seed in any::<u64>(),
        ) {
            use rand::seq::SliceRandom as _;
            use rand::SeedableRng as _;
            let (expected, expected_effects) = run(&events);
            let mut shuffled = events.clone();
            shuffled.extend(events.iter().take(3).cloned());
            shuffled.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
            let (record, effects) = run(&shuffled);
            prop_assert_eq!(&record.personal, &expected.personal);
            prop_assert_eq!(&effects.personal, &record.personal);
            prop_assert_eq!(&effects.groups, &expected_effects.groups);
            let net = |effects: &Effects| {
                let mut net: BTreeMap<String, i64> = BTreeMap::new();
                for recruit in &effects.recruits {
                    *net.entry(recruit.sponsor.clone()).or_default() += recruit.amount;
                }
                net.retain(|_, amount| *amount != 0);
                net
            };
            prop_assert_eq!(net(&effects), net(&expected_effects));
        }
    }
}
