//! A simulated MLM company, for the demo, the end-to-end tests and people trying the system.
//!
//! [`generate`] builds a seeded, reproducible organisation — a sponsor tree with realistic
//! depth and fan-out, pilot and standard programmes, mentors with groups — and its life over
//! simulated weeks as a timeline of [`Step`]s: enrolments, orders and some refunds, module
//! completions, events, rank advancements, pings, and the mentoring around them (groups,
//! assignments, sessions with attendance, feedback). [`drive`] sends a timeline through
//! IngestService and MentorshipService at a chosen rate; [`Scenario::write`] and
//! [`Scenario::read`] keep it in a file (JSON lines) to replay.

pub mod disorder;
pub mod drive;
pub mod generate;
pub mod http;
pub mod oracle;

use std::io::{BufRead as _, Write as _};
use std::path::Path;

use chrono::{DateTime, Utc};
use mentorstream_proto::activity::v1 as activity;
use mentorstream_proto::common::v1::{Decimal, Money};

pub use drive::{DriveError, Driver, Report};
pub use generate::{SimConfig, generate};

/// One thing that happens, at `at`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Step {
    /// Unique in the scenario; used as the `request_id` of mentorship calls.
    pub id: String,
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    pub action: Action,
}

/// What happens: an activity event through IngestService, or a mentoring call through
/// MentorshipService. Programs, groups and sessions are named by scenario ids; the driver
/// maps them to the ids the service gives.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    Activity(Activity),
    CreateProgram {
        program: String,
        name: String,
        pilot: bool,
        sessions_per_week: u32,
        minutes: i64,
    },
    CreateGroup {
        group: String,
        program: String,
        mentor: String,
        capacity: u32,
    },
    AssignMentee {
        group: String,
        mentee: String,
    },
    ScheduleSession {
        session: String,
        group: String,
        mentees: Vec<String>,
        starts_at: DateTime<Utc>,
        minutes: i64,
        topic: String,
    },
    CompleteSession {
        session: String,
        attendees: Vec<String>,
    },
    SubmitFeedback {
        session: String,
        mentee: String,
        rating: u32,
    },
}

/// An activity event as the company's systems would send it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Activity {
    pub source: String,
    pub source_event_id: String,
    pub partner_id: String,
    #[serde(flatten)]
    pub payload: Payload,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Payload {
    Enrolled {
        sponsor_id: String,
        display_name: String,
        locale: String,
        time_zone: String,
    },
    Order {
        order_id: String,
        /// PV with two decimals, e.g. "49.50".
        volume: String,
        /// Euros with two decimals.
        amount: String,
    },
    Refund {
        order_id: String,
        volume: String,
    },
    Module {
        module_id: String,
        minutes: u32,
    },
    Event {
        event_id: String,
    },
    Rank {
        level: u32,
        name: String,
    },
    Ping,
}

impl Activity {
    /// The event IngestService takes (the tenant comes from the API key).
    pub fn to_proto(&self, at: DateTime<Utc>) -> activity::ActivityEvent {
        use activity::activity_event::Payload as P;
        let decimal = |value: &str| {
            Some(Decimal {
                value: value.to_owned(),
            })
        };
        let payload = match &self.payload {
            Payload::Enrolled {
                sponsor_id,
                display_name,
                locale,
                time_zone,
            } => P::PartnerEnrolled(activity::PartnerEnrolled {
                sponsor_id: sponsor_id.clone(),
                display_name: display_name.clone(),
                locale: locale.clone(),
                time_zone: time_zone.clone(),
                sealed_personal: Vec::new(),
            }),
            Payload::Order {
                order_id,
                volume,
                amount,
            } => P::OrderPlaced(activity::OrderPlaced {
                order_id: order_id.clone(),
                volume: decimal(volume),
                amount: Some(Money {
                    amount: decimal(amount),
                    currency_code: "EUR".into(),
                }),
            }),
            Payload::Refund { order_id, volume } => P::OrderRefunded(activity::OrderRefunded {
                order_id: order_id.clone(),
                volume: decimal(volume),
            }),
            Payload::Module { module_id, minutes } => {
                P::ModuleCompleted(activity::ModuleCompleted {
                    module_id: module_id.clone(),
                    minutes: *minutes,
                })
            }
            Payload::Event { event_id } => P::EventAttended(activity::EventAttended {
                event_id: event_id.clone(),
                kind: activity::EventKind::Webinar.into(),
            }),
            Payload::Rank { level, name } => P::RankAchieved(activity::RankAchieved {
                rank_level: *level,
                rank_name: name.clone(),
            }),
            Payload::Ping => P::ActivityPing(activity::ActivityPing {
                kind: activity::PingKind::App.into(),
            }),
        };
        activity::ActivityEvent {
            tenant_id: String::new(),
            source: self.source.clone(),
            source_event_id: self.source_event_id.clone(),
            occurred_at: Some(timestamp(at)),
            partner_id: self.partner_id.clone(),
            accepted_at: None,
            payload: Some(payload),
        }
    }
}

pub fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read or write the scenario file: {0}")]
    Io(#[from] std::io::Error),
    #[error("line {line} of the scenario file is not a step: {error}")]
    Line {
        line: usize,
        error: serde_json::Error,
    },
}

/// The key with the largest count, the smallest key among equals.
fn most(counts: &std::collections::BTreeMap<&str, usize>) -> Option<String> {
    counts
        .iter()
        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
        .map(|(key, _)| (*key).to_owned())
}

/// A timeline of steps, in time order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scenario {
    pub steps: Vec<Step>,
}

impl Scenario {
    /// Writes one JSON object per line.
    pub fn write(&self, path: &Path) -> Result<(), FileError> {
        let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
        for step in &self.steps {
            serde_json::to_writer(&mut file, step).map_err(std::io::Error::from)?;
            file.write_all(b"\n")?;
        }
        file.flush()?;
        Ok(())
    }

    pub fn read(path: &Path) -> Result<Self, FileError> {
        let file = std::io::BufReader::new(std::fs::File::open(path)?);
        let mut steps = Vec::new();
        for (index, line) in file.lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            steps.push(
                serde_json::from_str(&line).map_err(|error| FileError::Line {
                    line: index + 1,
                    error,
                })?,
            );
        }
        Ok(Self { steps })
    }

    /// Whose dashboards are worth showing: the mentor with the most assignments (someone else
    /// than the leader when there is one) and the partner with the largest team (ties to the
    /// smaller id). None without groups.
    pub fn showcase(&self) -> Option<(String, String)> {
        let mut sponsors = std::collections::BTreeMap::new();
        let mut group_mentor = std::collections::BTreeMap::new();
        let mut assignments = std::collections::BTreeMap::<&str, usize>::new();
        for step in &self.steps {
            match &step.action {
                Action::Activity(Activity {
                    partner_id,
                    payload: Payload::Enrolled { sponsor_id, .. },
                    ..
                }) => {
                    sponsors.insert(partner_id.as_str(), sponsor_id.as_str());
                }
                Action::CreateGroup { group, mentor, .. } => {
                    group_mentor.insert(group.as_str(), mentor.as_str());
                }
                Action::AssignMentee { group, .. } => {
                    if let Some(mentor) = group_mentor.get(group.as_str()) {
                        *assignments.entry(mentor).or_default() += 1;
                    }
                }
                _ => {}
            }
        }
        let mut team_sizes = std::collections::BTreeMap::<&str, usize>::new();
        for partner in sponsors.keys() {
            // Each partner counts in the team of everyone above them (cycles cut at the size
            // of the company).
            let mut above = *partner;
            for _ in 0..sponsors.len() {
                match sponsors.get(above) {
                    Some(sponsor) if !sponsor.is_empty() => {
                        *team_sizes.entry(sponsor).or_default() += 1;
                        above = sponsor;
                    }
                    _ => break,
                }
            }
        }
        let leader = most(&team_sizes)?;
        let others: std::collections::BTreeMap<&str, usize> = assignments
            .iter()
            .filter(|(mentor, _)| **mentor != leader)
            .map(|(mentor, count)| (*mentor, *count))
            .collect();
        let mentor = most(&others).or_else(|| most(&assignments))?;
        Some((mentor, leader))
    }

    /// The activity events of the scenario, as sent.
    pub fn activity(&self) -> impl Iterator<Item = (&Step, &Activity)> {
        self.steps.iter().filter_map(|step| match &step.action {
            Action::Activity(activity) => Some((step, activity)),
            _ => None,
        })
    }
}
