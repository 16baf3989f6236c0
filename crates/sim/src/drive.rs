//! Sends a scenario through the public APIs: activity in batches through IngestService,
//! mentoring calls through MentorshipService, in time order, at a chosen rate or as fast as
//! the services answer. Every call is safe to repeat (events by their source ids, mentoring
//! calls by `request_id` = the step id), so the driver retries whatever a restart or a
//! passing outage interrupts.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use mentorstream_proto::ingest::v1::ingest_service_client::IngestServiceClient;
use mentorstream_proto::ingest::v1::{EventStatus, IngestRequest};
use mentorstream_proto::mentorship::v1 as mentorship;
use mentorstream_proto::mentorship::v1::mentorship_service_client::MentorshipServiceClient;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tower::ServiceExt as _;
use tower::util::BoxCloneSyncService;

use crate::{Action, Scenario, Step, timestamp};

/// Events per Ingest call when sending as fast as possible.
const BATCH: usize = 500;
/// How long a call may keep failing transiently before the run gives up.
const PATIENCE: Duration = Duration::from_secs(180);
const PAUSE: Duration = Duration::from_millis(250);
/// Refusals kept in the report, verbatim.
const KEPT_REFUSALS: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    #[error("invalid endpoint `{endpoint}`: {error}")]
    Endpoint { endpoint: String, error: String },
    #[error("the API key is not valid ASCII")]
    Key,
    #[error("{what} kept failing for {seconds} s: {status}")]
    Gave {
        what: String,
        seconds: u64,
        status: Status,
    },
    #[error("step {step} names {what} `{name}`, which an earlier step should have created")]
    Unknown {
        step: String,
        what: &'static str,
        name: String,
    },
}

/// What a run sent and how the services answered.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    pub events_sent: u64,
    /// Including [`Report::accepted_unanswered`].
    pub accepted: u64,
    /// Events a try of their batch stored before it was cut off (a killed ingest, a lost
    /// connection): the retry answered DUPLICATE for their first sighting in this run.
    pub accepted_unanswered: u64,
    pub duplicate: u64,
    pub rejected: u64,
    pub calls: u64,
    /// Mentoring calls the service refused (with its reason, the first few kept).
    pub calls_refused: u64,
    pub refusals: Vec<String>,
    /// The ids the service gave to what the scenario created, by scenario name.
    pub created: std::collections::BTreeMap<String, String>,
}

/// The identities (source, source event id) of the events sent so far in a run.
type Answered = HashSet<(String, String)>;

/// How the driver's calls travel: gRPC, or the HTTP/JSON API ([`crate::http`]).
pub type Transport = BoxCloneSyncService<
    http::Request<tonic::body::Body>,
    http::Response<tonic::body::Body>,
    crate::http::TransportError,
>;

#[derive(Debug)]
pub struct Driver {
    ingest: IngestServiceClient<Transport>,
    mentorship: MentorshipServiceClient<Transport>,
    authorization: tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
    /// Steps per second; None: as fast as possible.
    pub rate: Option<f64>,
    pub progress: bool,
    /// Steps sent so far, for whoever watches the run (a fault test choosing its moment).
    pub sent: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

fn channel(endpoint: &str) -> Result<Transport, DriveError> {
    let channel = Channel::from_shared(endpoint.to_owned())
        .map_err(|error| DriveError::Endpoint {
            endpoint: endpoint.to_owned(),
            error: error.to_string(),
        })?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(60))
        .connect_lazy();
    Ok(BoxCloneSyncService::new(channel.map_err(|error| {
        crate::http::TransportError(Box::new(error))
    })))
}

/// A failure worth another try of the same call (a partner enrolled a moment ago and not yet
/// known to mentorship is UNAVAILABLE, reason `PARTNER_NOT_YET_KNOWN`).
fn transient(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded
    )
}

impl Driver {
    /// A driver calling the services over gRPC.
    pub fn new(
        ingest_endpoint: &str,
        mentorship_endpoint: &str,
        api_key: &str,
    ) -> Result<Self, DriveError> {
        Self::with(
            channel(ingest_endpoint)?,
            channel(mentorship_endpoint)?,
            api_key,
        )
    }

    /// A driver calling the same methods through the HTTP/JSON API (`http://host:port`).
    pub fn over_http(
        ingest_url: &str,
        mentorship_url: &str,
        api_key: &str,
    ) -> Result<Self, DriveError> {
        let transport = |url: &str| BoxCloneSyncService::new(crate::http::JsonTransport::new(url));
        Self::with(transport(ingest_url), transport(mentorship_url), api_key)
    }

    fn with(ingest: Transport, mentorship: Transport, api_key: &str) -> Result<Self, DriveError> {
        Ok(Self {
            ingest: IngestServiceClient::new(ingest),
            mentorship: MentorshipServiceClient::new(mentorship),
            authorization: format!("Bearer {api_key}")
                .parse()
                .map_err(|_| DriveError::Key)?,
            rate: None,
            progress: false,
            sent: std::sync::Arc::default(),
        })
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", self.authorization.clone());
        request
    }

    /// Sends every step of `scenario`, in order.
    pub async fn run(&mut self, scenario: &Scenario) -> Result<Report, DriveError> {
        let progress = if self.progress {
            let bar = indicatif::ProgressBar::new(scenario.steps.len() as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} steps, {per_sec}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        } else {
            indicatif::ProgressBar::hidden()
        };
        let batch_limit = self.rate.map_or(BATCH, |rate| {
            ((rate / 10.0).ceil() as usize).clamp(1, BATCH)
        });
        let started = Instant::now();
        let mut report = Report::default();
        let mut ids: HashMap<String, String> = HashMap::new();
        let mut answered = Answered::default();
        let counter = self.sent.clone();
        let mut batch: Vec<&Step> = Vec::new();
        let mut done = 0u64;
        for step in &scenario.steps {
            if matches!(step.action, Action::Activity(_)) {
                batch.push(step);
                if batch.len() < batch_limit {
                    continue;
                }
            }
            if !batch.is_empty() {
                self.pace(started, done).await;
                self.ingest(&batch, &mut answered, &mut report).await?;
                done += batch.len() as u64;
                progress.set_position(done);
                counter.store(done, std::sync::atomic::Ordering::Relaxed);
                batch.clear();
            }
            if !matches!(step.action, Action::Activity(_)) {
                self.pace(started, done).await;
                self.call(step, &mut ids, &mut report).await?;
                done += 1;
                progress.set_position(done);
                counter.store(done, std::sync::atomic::Ordering::Relaxed);
            }
        }
        if !batch.is_empty() {
            self.ingest(&batch, &mut answered, &mut report).await?;
            done += batch.len() as u64;
            progress.set_position(done);
        }
        progress.finish();
        report.created = ids.into_iter().collect();
        Ok(report)
    }

    /// Waits until sending `done` steps keeps to the rate.
    async fn pace(&self, started: Instant, done: u64) {
        if let Some(rate) = self.rate {
            let due = started + Duration::from_secs_f64(done as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
    }

    async fn ingest(
        &mut self,
        batch: &[&Step],
        answered: &mut Answered,
        report: &mut Report,
    ) -> Result<(), DriveError> {
        let events: Vec<_> = batch
            .iter()
            .filter_map(|step| match &step.action {
                Action::Activity(activity) => Some(activity.to_proto(step.at)),
                _ => None,
            })
            .collect();
        let count = events.len();
        let mut tries = 0u32;
        let answer = retry(&format!("Ingest of {count} events"), || {
            tries += 1;
            let mut client = self.ingest.clone();
            let request = self.request(IngestRequest {
                events: events.clone(),
            });
            async move { client.ingest(request).await }
        })
        .await?;
        report.events_sent += count as u64;
        for (event, result) in events.iter().zip(&answer.results) {
            let first_sighting =
                answered.insert((event.source.clone(), event.source_event_id.clone()));
            match result.status() {
                EventStatus::Accepted => report.accepted += 1,
                EventStatus::Duplicate if first_sighting && tries > 1 => {
                    report.accepted += 1;
                    report.accepted_unanswered += 1;
                }
                EventStatus::Duplicate => report.duplicate += 1,
                _ => report.rejected += 1,
            }
        }
        Ok(())
    }

    async fn call(
        &mut self,
        step: &Step,
        ids: &mut HashMap<String, String>,
        report: &mut Report,
    ) -> Result<(), DriveError> {
        let known = |what: &'static str, name: &str| {
            ids.get(name).cloned().ok_or_else(|| DriveError::Unknown {
                step: step.id.clone(),
                what,
                name: name.to_owned(),
            })
        };
        let request_id = step.id.clone();
        let occurred_at = Some(timestamp(step.at));
        let client = self.mentorship.clone();
        let what = format!("step {}", step.id);
        let outcome: Result<Option<(String, String)>, Status> = match &step.action {
            Action::Activity(_) => return Ok(()),
            Action::CreateProgram {
                program,
                name,
                pilot,
                sessions_per_week,
                minutes,
            } => {
                let message = mentorship::CreateProgramRequest {
                    request_id,
                    name: name.clone(),
                    kind: if *pilot {
                        mentorship::ProgramKind::Pilot
                    } else {
                        mentorship::ProgramKind::Standard
                    }
                    .into(),
                    sessions_per_week: *sessions_per_week,
                    default_session_length: Some(prost_types::Duration {
                        seconds: minutes * 60,
                        nanos: 0,
                    }),
                };
                retry_refusable(&what, || {
                    let mut client = client.clone();
                    let request = self.request(message.clone());
                    async move { client.create_program(request).await }
                })
                .await?
                .map(|answer| {
                    answer
                        .program
                        .map(|created| (program.clone(), created.program_id))
                })
            }
            Action::CreateGroup {
                group,
                program,
                mentor,
                capacity,
            } => {
                let message = mentorship::CreateGroupRequest {
                    request_id,
                    program_id: known("program", program)?,
                    mentor_id: mentor.clone(),
                    name: format!("{mentor}'s group"),
                    capacity: *capacity,
                    occurred_at,
                };
                retry_refusable(&what, || {
                    let mut client = client.clone();
                    let request = self.request(message.clone());
                    async move { client.create_group(request).await }
                })
                .await?
                .map(|answer| {
                    answer
                        .group
                        .map(|created| (group.clone(), created.group_id))
                })
            }
            Action::AssignMentee { group, mentee } => {
                let message = mentorship::AssignMenteeRequest {
                    request_id,
                    group_id: known("group", group)?,
                    mentee_id: mentee.clone(),
                    occurred_at,
                };
                retry_refusable(&what, || {
                    let mut client = client.clone();
                    let request = self.request(message.clone());
                    async move { client.assign_mentee(request).await }
                })
                .await?
                .map(|_| None)
            }
            Action::ScheduleSession {
                session,
                group,
                mentees,
                starts_at,
                minutes,
                topic,
            } => {
                let message = mentorship::ScheduleSessionRequest {
                    request_id,
                    group_id: known("group", group)?,
                    mentee_ids: mentees.clone(),
                    starts_at: Some(timestamp(*starts_at)),
                    duration: Some(prost_types::Duration {
                        seconds: minutes * 60,
                        nanos: 0,
                    }),
                    topic: topic.clone(),
                    module_id: String::new(),
                    occurred_at,
                };
                retry_refusable(&what, || {
                    let mut client = client.clone();
                    let request = self.request(message.clone());
                    async move { client.schedule_session(request).await }
                })
                .await?
                .map(|answer| {
                    answer
                        .session
                        .map(|created| (session.clone(), created.session_id))
                })
            }
            Action::CompleteSession { session, attendees } => {
                let message = mentorship::CompleteSessionRequest {
                    request_id,
                    session_id: known("session", session)?,
                    attendee_ids: attendees.clone(),
                    notes: String::new(),
                    occurred_at,
                };
                retry_refusable(&what, || {
                    let mut client = client.clone();
                    let request = self.request(message.clone());
                    async move { client.complete_session(request).await }
                })
                .await?
                .map(|_| None)
            }
            Action::SubmitFeedback {
                session,
                mentee,
                rating,
            } => {
                let message = mentorship::SubmitFeedbackRequest {
                    request_id,
                    session_id: known("session", session)?,
                    mentee_id: mentee.clone(),
                    rating: *rating,
                    comment: String::new(),
                    occurred_at,
                };
                retry_refusable(&what, || {
                    let mut client = client.clone();
                    let request = self.request(message.clone());
                    async move { client.submit_feedback(request).await }
                })
                .await?
                .map(|_| None)
            }
        };
        report.calls += 1;
        match outcome {
            Ok(Some((name, id))) => {
                ids.insert(name, id);
            }
            Ok(None) => {}
            Err(status) => {
                report.calls_refused += 1;
                if report.refusals.len() < KEPT_REFUSALS {
                    report
                        .refusals
                        .push(format!("{}: {}", step.id, status.message()));
                }
            }
        }
        Ok(())
    }
}

/// Calls until the answer is not transient; gives up after [`PATIENCE`].
async fn retry<T, F, Fut>(what: &str, mut call: F) -> Result<T, DriveError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, Status>>,
{
    match retry_refusable(what, &mut call).await? {
        Ok(answer) => Ok(answer),
        Err(status) => Err(DriveError::Gave {
            what: what.to_owned(),
            seconds: 0,
            status,
        }),
    }
}

/// Like [`retry`], but a refusal (a non-transient status) is an answer, not an error.
async fn retry_refusable<T, F, Fut>(
    what: &str,
    mut call: F,
) -> Result<Result<T, Status>, DriveError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, Status>>,
{
    let started = Instant::now();
    loop {
        match call().await {
            Ok(answer) => return Ok(Ok(answer.into_inner())),
            Err(status) if transient(&status) => {
                if started.elapsed() > PATIENCE {
                    return Err(DriveError::Gave {
                        what: what.to_owned(),
                        seconds: PATIENCE.as_secs(),
                        status,
                    });
                }
                tracing::debug!(what, %status, "retrying");
                tokio::time::sleep(PAUSE).await;
            }
            Err(status) => return Ok(Err(status)),
        }
    }
}
