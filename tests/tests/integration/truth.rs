//! What KPI answers claim, through the public APIs: `as_of` passes the moment an event was
//! accepted while other partitions stay idle (or never receive anything), and the number read
//! then is exact; a subject nobody named is NOT_FOUND in every RPC that takes one; a group can
//! be addressed by its mentor; a mentorship call right after an enrolment succeeds or is
//! refused as retryable.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use mentorstream_e2e::{Service, System, WAIT};
use mentorstream_proto::activity::v1::{
    ActivityEvent, OrderPlaced, PartnerEnrolled, activity_event::Payload,
};
use mentorstream_proto::common::v1::{Decimal, Money};
use mentorstream_proto::ingest::v1::ingest_service_client::IngestServiceClient;
use mentorstream_proto::ingest::v1::{EventStatus, IngestRequest};
use mentorstream_proto::kpi::v1::kpi_service_client::KpiServiceClient;
use mentorstream_proto::kpi::v1::{
    Contribution, ExplainRequest, Fraction, GetGoalProgressRequest, GetJourneyRequest,
    GetLeaderboardRequest, GetScorecardRequest, GetScorecardResponse, GetSeriesRequest,
    Granularity, Metric, Subject, SubjectKind, WatchKpisRequest, Window, WindowKind, metric_value,
};
use mentorstream_proto::mentorship::v1::mentorship_service_client::MentorshipServiceClient;
use mentorstream_proto::mentorship::v1::{
    AssignMenteeRequest, CompleteSessionRequest, CreateGroupRequest, CreateProgramRequest,
    ProgramKind, ScheduleSessionRequest, SubmitFeedbackRequest,
};
use tonic::codec::CompressionEncoding;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt as _;

pub(crate) fn timestamp(time: DateTime<Utc>) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: i32::try_from(time.timestamp_subsec_nanos()).expect("nanos"),
    })
}

/// When every event of the test occurred: one instant, so that all fall on one local day.
fn occurred_at() -> DateTime<Utc> {
    static AT: std::sync::OnceLock<DateTime<Utc>> = std::sync::OnceLock::new();
    *AT.get_or_init(|| Utc::now() - chrono::Duration::minutes(5))
}

pub(crate) fn event(id: &str, partner_id: &str, payload: Payload) -> ActivityEvent {
    ActivityEvent {
        source: "crm".into(),
        source_event_id: id.into(),
        occurred_at: timestamp(occurred_at()),
        partner_id: partner_id.into(),
        payload: Some(payload),
        ..ActivityEvent::default()
    }
}

pub(crate) fn enrolment(partner_id: &str, sponsor_id: &str) -> ActivityEvent {
    event(
        &format!("enrol-{partner_id}"),
        partner_id,
        Payload::PartnerEnrolled(PartnerEnrolled {
            sponsor_id: sponsor_id.into(),
            display_name: partner_id.into(),
            ..PartnerEnrolled::default()
        }),
    )
}

fn order(order_id: &str, partner_id: &str, volume: &str) -> ActivityEvent {
    let decimal = || {
        Some(Decimal {
            value: volume.into(),
        })
    };
    event(
        order_id,
        partner_id,
        Payload::OrderPlaced(OrderPlaced {
            order_id: order_id.into(),
            volume: decimal(),
            amount: Some(Money {
                amount: decimal(),
                currency_code: "EUR".into(),
            }),
        }),
    )
}

pub(crate) fn subject(kind: SubjectKind, id: &str) -> Option<Subject> {
    Some(Subject {
        kind: kind.into(),
        id: id.into(),
        mentor_id: String::new(),
    })
}

pub(crate) fn lifetime() -> Option<Window> {
    Some(Window {
        kind: WindowKind::Lifetime.into(),
        anchor: None,
    })
}

pub(crate) struct Clients<'s> {
    pub(crate) system: &'s System,
    pub(crate) ingest: IngestServiceClient<Channel>,
    pub(crate) kpi: KpiServiceClient<Channel>,
    pub(crate) mentorship: MentorshipServiceClient<Channel>,
}

impl<'s> Clients<'s> {
    /// Plain clients of the system's services.
    pub(crate) async fn connect(system: &'s System) -> Self {
        Self {
            system,
            ingest: IngestServiceClient::new(system.channel(Service::Ingest).await),
            kpi: KpiServiceClient::new(system.channel(Service::Kpi).await),
            mentorship: MentorshipServiceClient::new(system.channel(Service::Mentorship).await),
        }
    }

    /// Ingests `events`, each of which must be ACCEPTED; the moment the answer came, by when
    /// the broker had acknowledged every one.
    pub(crate) async fn ingest(&mut self, events: Vec<ActivityEvent>) -> DateTime<Utc> {
        let results = self
            .ingest
            .ingest(self.system.request(IngestRequest { events }))
            .await
            .expect("ingest")
            .into_inner()
            .results;
        for result in results {
            assert_eq!(result.status(), EventStatus::Accepted, "{result:?}");
        }
        Utc::now()
    }

    pub(crate) async fn scorecard(
        &mut self,
        subject: Option<Subject>,
    ) -> Result<GetScorecardResponse, Status> {
        self.kpi
            .get_scorecard(self.system.request(GetScorecardRequest {
                subject,
                window: lifetime(),
            }))
            .await
            .map(tonic::Response::into_inner)
    }

    /// A new pilot programme (one session a week) named `name`: its id.
    pub(crate) async fn pilot_program(&mut self, name: &str) -> String {
        self.mentorship
            .create_program(self.system.request(CreateProgramRequest {
                request_id: String::new(),
                name: name.into(),
                kind: ProgramKind::Pilot.into(),
                sessions_per_week: 1,
                default_session_length: None,
            }))
            .await
            .expect("program")
            .into_inner()
            .program
            .expect("program")
            .program_id
    }

    /// Polls only `as_of` (the tenant's scorecard) until it is at or past `accepted`.
    pub(crate) async fn wait_as_of(&mut self, accepted: DateTime<Utc>) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let answer = self
                .scorecard(subject(SubjectKind::Tenant, ""))
                .await
                .expect("tenant scorecard");
            let as_of = answer.as_of.map(|time| {
                DateTime::from_timestamp(time.seconds, u32::try_from(time.nanos).expect("nanos"))
                    .expect("as_of")
            });
            if as_of.is_some_and(|as_of| as_of >= accepted) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "as_of stayed at {as_of:?}, before {accepted}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A partner's lifetime (orders, sales volume), read once.
    async fn orders_and_volume(&mut self, partner_id: &str) -> (i64, String) {
        let values = self
            .scorecard(subject(SubjectKind::Partner, partner_id))
            .await
            .expect("scorecard")
            .values;
        let find = |metric: Metric| {
            values
                .iter()
                .find(|value| value.metric == i32::from(metric))
                .and_then(|value| value.value.clone())
        };
        let orders = match find(Metric::Orders) {
            Some(metric_value::Value::Count(count)) => count,
            other => panic!("orders: {other:?}"),
        };
        let volume = match find(Metric::SalesVolume) {
            Some(metric_value::Value::Decimal(decimal)) => decimal.value,
            other => panic!("sales volume: {other:?}"),
        };
        (orders, volume)
    }

    /// A group of `program_id` led by `mentor` with `mentees` assigned now, each call retried
    /// while mentorship's read model has not caught up with the enrolments: the group's id.
    pub(crate) async fn group_of(
        &self,
        program_id: &str,
        mentor: &str,
        mentees: &[&str],
    ) -> String {
        self.group_at(program_id, mentor, mentees, None).await
    }

    /// [`Self::group_of`], created and assigned at `at` (`None`: now).
    pub(crate) async fn group_at(
        &self,
        program_id: &str,
        mentor: &str,
        mentees: &[&str],
        at: Option<prost_types::Timestamp>,
    ) -> String {
        let system = self.system;
        let mentorship = self.mentorship.clone();
        let (group, _) = Self::until_known(|| {
            let mut mentorship = mentorship.clone();
            let request = system.request(CreateGroupRequest {
                request_id: format!("group-of-{mentor}"),
                program_id: program_id.to_owned(),
                mentor_id: mentor.to_owned(),
                name: format!("{mentor}'s group"),
                capacity: 0,
                occurred_at: at,
            });
            async move { mentorship.create_group(request).await }
        })
        .await;
        let group_id = group.group.expect("group").group_id;
        for mentee in mentees {
            Self::until_known(|| {
                let mut mentorship = mentorship.clone();
                let request = system.request(AssignMenteeRequest {
                    request_id: format!("assign-{mentee}-to-{mentor}"),
                    group_id: group_id.clone(),
                    mentee_id: (*mentee).to_owned(),
                    occurred_at: at,
                });
                async move { mentorship.assign_mentee(request).await }
            })
            .await;
        }
        group_id
    }

    /// Calls `call` until it succeeds; the only refusal allowed meanwhile is the retryable
    /// one for a partner the read model does not know yet. The retryable refusals seen.
    pub(crate) async fn until_known<T, F, Fut>(mut call: F) -> (T, usize)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let mut refused = 0;
        loop {
            match call().await {
                Ok(answer) => return (answer.into_inner(), refused),
                Err(status) => {
                    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                    let details = status.get_error_details();
                    let info = details.error_info().expect("ErrorInfo");
                    assert_eq!(info.reason, "PARTNER_NOT_YET_KNOWN", "{status:?}");
                    let delay = details
                        .retry_info()
                        .and_then(|retry| retry.retry_delay)
                        .expect("RetryInfo");
                    refused += 1;
                    assert!(refused < 100, "still not known: {status:?}");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

#[tokio::test]
async fn as_of_passes_each_accepted_event_and_unknown_subjects_are_not_found() {
    let mut system = System::start(false).await;
    let mut clients = Clients {
        system: &system,
        // Compressed both ways, as clients may choose.
        ingest: IngestServiceClient::new(system.channel(Service::Ingest).await)
            .send_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Gzip),
        kpi: KpiServiceClient::new(system.channel(Service::Kpi).await)
            .send_compressed(CompressionEncoding::Zstd)
            .accept_compressed(CompressionEncoding::Zstd),
        mentorship: MentorshipServiceClient::new(system.channel(Service::Mentorship).await),
    };

    // One partner's events land on one of the activity topic's three partitions; the other
    // two stay idle, and no partition of the mentorship topic receives anything yet.
    let accepted = clients
        .ingest(vec![enrolment("root", ""), order("o-1", "root", "12.34")])
        .await;
    clients.wait_as_of(accepted).await;
    assert_eq!(clients.orders_and_volume("root").await, (1, "12.34".into()));
    // Seconds later, while another partner's orders keep coming without a pause, the next
    // order alike.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn({
        let mut ingest = clients.ingest.clone();
        let (stop, api_key) = (stop.clone(), system.api_key.clone());
        async move {
            let mut written = 0;
            while !stop.load(Ordering::Relaxed) {
                let events = vec![order(&format!("busy-{written}"), "busy", "1")];
                let request = mentorstream_testkit::authorized(&api_key, IngestRequest { events });
                ingest.ingest(request).await.expect("busy order");
                written += 1;
            }
            written
        }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let accepted = clients.ingest(vec![order("o-2", "root", "0.66")]).await;
    clients.wait_as_of(accepted).await;
    assert_eq!(clients.orders_and_volume("root").await, (2, "13.00".into()));
    stop.store(true, Ordering::Relaxed);
    let busy = writer.await.expect("writer");
    eprintln!("{busy} orders of another partner were written meanwhile");

    assert_unknown_subjects_are_not_found(&mut clients).await;

    // Mentorship right after enrolments: success, or a refusal that says to retry.
    let program_id = clients.pilot_program("Pilot").await;
    let mentees = ["newbie-1", "newbie-2", "newbie-3"];
    let mut enrolments = vec![enrolment("mentor", "root")];
    enrolments.extend(mentees.iter().map(|mentee| enrolment(mentee, "mentor")));
    clients.ingest(enrolments).await;
    let mentorship = clients.mentorship.clone();
    let (group, refused_group) = Clients::until_known(|| {
        let mut mentorship = mentorship.clone();
        let request = system.request(CreateGroupRequest {
            request_id: "group-1".into(),
            program_id: program_id.clone(),
            mentor_id: "mentor".into(),
            name: "Mentor's group".into(),
            capacity: 0,
            occurred_at: None,
        });
        async move { mentorship.create_group(request).await }
    })
    .await;
    let group_id = group.group.expect("group").group_id;
    let two_hours_ago = Utc::now() - chrono::Duration::hours(2);
    let mut refused_assign = 0;
    for mentee in mentees {
        let (_, refused) = Clients::until_known(|| {
            let mut mentorship = mentorship.clone();
            let request = system.request(AssignMenteeRequest {
                request_id: format!("assign-{mentee}"),
                group_id: group_id.clone(),
                mentee_id: mentee.into(),
                occurred_at: timestamp(two_hours_ago),
            });
            async move { mentorship.assign_mentee(request).await }
        })
        .await;
        refused_assign += refused;
    }
    eprintln!("retryable refusals before the read model knew: {refused_group} + {refused_assign}");
    rate_a_session(&mut clients, &group_id, &mentees, two_hours_ago).await;

    // Everything above is applied once as_of passes it.
    clients.wait_as_of(Utc::now()).await;
    assert_group_fractions_and_shapes(&mut clients, &group_id).await;
    assert_teams_and_the_tenant_explain_their_numbers(&mut clients).await;
    assert_the_same_over_http_json(&system, &program_id).await;
    assert_the_example_subscribers_agree(&system);
    system.stop();
}

/// The example subscribers of kpi.updates.v1 (examples/: Rust, and Python with the descriptors
/// a service publishes at /mentorstream.binpb) print the same latest numbers of every key, the tenant's among them. Every
/// change was applied before (as_of passed it) and is published within a second; the Rust one
/// runs first and reads until the topic has been quiet for 3 s, so both see the same records.
fn assert_the_example_subscribers_agree(system: &System) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let kafka = &system.config.kafka;
    // The descriptors as published: served by every service.
    let descriptors = tempfile::NamedTempFile::new().expect("temp file");
    let url = format!("{}/mentorstream.binpb", system.endpoint(Service::Kpi));
    let output = std::process::Command::new("curl")
        .args(["-sSf", "-o"])
        .arg(descriptors.path())
        .arg(&url)
        .output()
        .expect("curl");
    assert!(output.status.success(), "{output:?}");
    let subscriber = |program: &std::path::Path, extra: &[&std::ffi::OsStr], group: &str| {
        let output = std::process::Command::new(program)
            .args(extra)
            .args([
                "--brokers",
                &kafka.brokers,
                "--topic",
                &kafka.topics.kpi_updates,
            ])
            .args([
                "--group",
                &mentorstream_testkit::unique(group),
                "--idle-ms",
                "3000",
            ])
            .output()
            .expect("subscriber runs (make tools installs the Python one's packages)");
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).expect("utf-8")
    };
    let rust = subscriber(&mentorstream_e2e::binary("kpi-updates"), &[], "example-rs");
    let script = root.join("examples/python/kpi_updates.py");
    let python = subscriber(
        std::path::Path::new("python3"),
        &[
            script.as_os_str(),
            "--descriptors".as_ref(),
            descriptors.path().as_os_str(),
        ],
        "example-py",
    );
    assert_eq!(rust, python);
    let tenant = format!("{}/n//life ", system.tenant_id);
    let line = rust
        .lines()
        .find(|line| line.starts_with(&tenant))
        .unwrap_or_else(|| panic!("no {tenant}line in {rust}"));
    assert!(line.contains(" METRIC_PARTNERS=6"), "{line}");
}

/// HTTP/JSON on the services' own ports gives what gRPC gives, with the same key, errors and
/// idempotency.
async fn assert_the_same_over_http_json(system: &System, program_id: &str) {
    let http = reqwest::Client::new();
    let post = |service: Service, path: &str, body: serde_json::Value| {
        http.post(format!("{}{path}", system.endpoint(service)))
            .bearer_auth(&system.api_key)
            .json(&body)
    };
    let tenant: serde_json::Value = post(
        Service::Kpi,
        "/v1/kpi/GetScorecard",
        serde_json::json!({
            "subject": {"kind": "SUBJECT_KIND_TENANT"},
            "window": {"kind": "WINDOW_KIND_LIFETIME"},
        }),
    )
    .send()
    .await
    .expect("answered")
    .json()
    .await
    .expect("json");
    let partners = tenant["values"]
        .as_array()
        .expect("values")
        .iter()
        .find(|value| value["metric"] == "METRIC_PARTNERS")
        .cloned();
    assert_eq!(
        partners,
        Some(serde_json::json!({"metric": "METRIC_PARTNERS", "count": "6"})),
        "{tenant}"
    );
    let unknown = post(
        Service::Kpi,
        "/v1/kpi/GetScorecard",
        serde_json::json!({
            "subject": {"kind": "SUBJECT_KIND_PARTNER", "id": "nobody"},
            "window": {"kind": "WINDOW_KIND_LIFETIME"},
        }),
    )
    .send()
    .await
    .expect("answered");
    assert_eq!(unknown.status(), reqwest::StatusCode::NOT_FOUND);
    // WatchKpis as server-sent events: the current numbers first.
    let mut watching = post(
        Service::Kpi,
        "/v1/kpi/WatchKpis",
        serde_json::json!({"subjects": [{"kind": "SUBJECT_KIND_TENANT"}]}),
    )
    .send()
    .await
    .expect("answered");
    assert_eq!(
        watching.headers()["content-type"],
        "text/event-stream",
        "{watching:?}"
    );
    let mut received = String::new();
    while !received.contains("\n\n") {
        let chunk = watching.chunk().await.expect("chunk").expect("an event");
        received.push_str(std::str::from_utf8(&chunk).expect("utf-8"));
    }
    let (event, rest) = received.split_once('\n').expect("event line");
    assert_eq!(event, "event: message");
    let update: serde_json::Value =
        serde_json::from_str(rest.trim_end().strip_prefix("data: ").expect("data line"))
            .expect("json");
    assert_eq!(update["update"]["subject"]["kind"], "SUBJECT_KIND_TENANT");
    assert!(
        update["update"]["values"]
            .as_array()
            .expect("values")
            .contains(&serde_json::json!({"metric": "METRIC_PARTNERS", "count": "6"})),
        "{update}"
    );
    drop(watching);
    let unknown_watch = post(
        Service::Kpi,
        "/v1/kpi/WatchKpis",
        serde_json::json!({"subjects": [{"kind": "SUBJECT_KIND_PARTNER", "id": "nobody"}]}),
    )
    .send()
    .await
    .expect("answered");
    assert_eq!(unknown_watch.status(), reqwest::StatusCode::NOT_FOUND);
    // The same Idempotency-Key twice: one group, the first answer twice.
    let create = || {
        post(
            Service::Mentorship,
            "/v1/mentorship/CreateGroup",
            serde_json::json!({"programId": program_id, "mentorId": "root", "name": "Root's group"}),
        )
        .header("Idempotency-Key", "http-group-1")
    };
    let first: serde_json::Value = create()
        .send()
        .await
        .expect("answered")
        .json()
        .await
        .expect("json");
    let again: serde_json::Value = create()
        .send()
        .await
        .expect("answered")
        .json()
        .await
        .expect("json");
    assert_eq!(first, again);
    assert_eq!(first["group"]["mentorId"], "root", "{first}");
}

/// A team's recruits: the root's own enrolment of `mentor`, then `mentor`'s team (three), a
/// page at a time; the tenant's: its one top-level team with recruits.
async fn assert_teams_and_the_tenant_explain_their_numbers(clients: &mut Clients<'_>) {
    let day = occurred_at()
        .with_timezone(&chrono_tz::Europe::Moscow)
        .date_naive();
    let date = Some(day.into());
    let team = |id: &str| {
        Some(Subject {
            kind: SubjectKind::Team.into(),
            id: id.into(),
            mentor_id: String::new(),
        })
    };
    let amount = |value: &str| {
        Some(Decimal {
            value: value.into(),
        })
    };
    let mut pages = Vec::new();
    let mut page_token = String::new();
    loop {
        let answer = clients
            .kpi
            .explain(clients.system.request(ExplainRequest {
                subject: team("root"),
                metric: Metric::Recruits.into(),
                granularity: Granularity::Day.into(),
                date,
                page_size: 1,
                page_token: page_token.clone(),
            }))
            .await
            .expect("explain")
            .into_inner();
        assert_eq!(
            answer.value.and_then(|value| value.value),
            Some(metric_value::Value::Count(4))
        );
        pages.push(answer.contributions);
        if answer.next_page_token.is_empty() {
            break;
        }
        page_token = answer.next_page_token;
    }
    assert_eq!(
        pages,
        [
            vec![Contribution {
                source: "crm".into(),
                source_event_id: "enrol-mentor".into(),
                partner_id: "root".into(),
                occurred_at: timestamp(occurred_at()).map(|time| prost_types::Timestamp {
                    nanos: time.nanos / 1_000 * 1_000,
                    ..time
                }),
                amount: amount("1"),
                subject: None,
            }],
            vec![Contribution {
                partner_id: "mentor".into(),
                amount: amount("3"),
                subject: team("mentor"),
                ..Contribution::default()
            }],
        ]
    );
    let tenant = clients
        .kpi
        .explain(clients.system.request(ExplainRequest {
            subject: subject(SubjectKind::Tenant, ""),
            metric: Metric::Recruits.into(),
            granularity: Granularity::Day.into(),
            date,
            page_size: 0,
            page_token: String::new(),
        }))
        .await
        .expect("explain")
        .into_inner();
    assert_eq!(
        tenant.value.and_then(|value| value.value),
        Some(metric_value::Value::Count(4))
    );
    assert_eq!(
        tenant.contributions,
        [Contribution {
            partner_id: "root".into(),
            amount: amount("4"),
            subject: team("root"),
            ..Contribution::default()
        }]
    );
}

/// One session an hour ago, completed by all three mentees, rated 5, 4 and 4.
async fn rate_a_session(
    clients: &mut Clients<'_>,
    group_id: &str,
    mentees: &[&str],
    assigned: DateTime<Utc>,
) {
    let system = clients.system;
    let session_id = clients
        .mentorship
        .schedule_session(system.request(ScheduleSessionRequest {
            request_id: "session-1".into(),
            group_id: group_id.into(),
            mentee_ids: vec![],
            starts_at: timestamp(assigned + chrono::Duration::hours(1)),
            duration: None,
            topic: "First sale".into(),
            module_id: String::new(),
            occurred_at: timestamp(assigned + chrono::Duration::minutes(5)),
        }))
        .await
        .expect("scheduled")
        .into_inner()
        .session
        .expect("session")
        .session_id;
    clients
        .mentorship
        .complete_session(system.request(CompleteSessionRequest {
            request_id: "complete-1".into(),
            session_id: session_id.clone(),
            attendee_ids: mentees.iter().map(|&mentee| mentee.into()).collect(),
            notes: String::new(),
            occurred_at: timestamp(assigned + chrono::Duration::minutes(90)),
        }))
        .await
        .expect("completed");
    for (mentee, rating) in mentees.iter().zip([5, 4, 4]) {
        clients
            .mentorship
            .submit_feedback(system.request(SubmitFeedbackRequest {
                request_id: format!("feedback-{mentee}"),
                session_id: session_id.clone(),
                mentee_id: (*mentee).into(),
                rating,
                comment: String::new(),
                occurred_at: timestamp(assigned + chrono::Duration::minutes(95)),
            }))
            .await
            .expect("feedback");
    }
}

/// The group's ratios are exact fractions with their parts (retention null while nobody is
/// eligible); the tenant and the teams count their partners; the mentor names the group.
async fn assert_group_fractions_and_shapes(clients: &mut Clients<'_>, group_id: &str) {
    let fraction = |numerator, denominator, value: Option<&str>| {
        Some(metric_value::Value::Fraction(Fraction {
            numerator,
            denominator,
            value: value.map(|value| Decimal {
                value: value.into(),
            }),
        }))
    };
    let count = |count| Some(metric_value::Value::Count(count));
    let by_mentor = clients
        .scorecard(Some(Subject {
            kind: SubjectKind::Group.into(),
            id: String::new(),
            mentor_id: "mentor".into(),
        }))
        .await
        .expect("the mentor's group");
    assert_eq!(
        by_mentor.subject,
        Some(Subject {
            kind: SubjectKind::Group.into(),
            id: group_id.into(),
            mentor_id: "mentor".into(),
        })
    );
    let group = values_of(&by_mentor);
    assert_eq!(group[&Metric::GroupSize], count(3));
    assert_eq!(group[&Metric::SessionsCompleted], count(3));
    assert_eq!(group[&Metric::FeedbackSum], count(13));
    assert_eq!(group[&Metric::FeedbackCount], count(3));
    assert_eq!(group[&Metric::FeedbackAvg], fraction(13, 3, Some("4.3333")));
    assert_eq!(group[&Metric::Retention30d], fraction(0, 0, None));
    let newbie = values_of(
        &clients
            .scorecard(subject(SubjectKind::Partner, "newbie-1"))
            .await
            .expect("newbie"),
    );
    assert_eq!(newbie[&Metric::FeedbackAvg], fraction(0, 0, None));
    let tenant = values_of(
        &clients
            .scorecard(subject(SubjectKind::Tenant, ""))
            .await
            .expect("tenant"),
    );
    // root, mentor, the three newbies, and `busy`, whose orders came without an enrolment.
    assert_eq!(tenant[&Metric::Partners], count(6));
    for (root, partners, depth) in [("root", 5, 2), ("mentor", 4, 1), ("newbie-1", 1, 0)] {
        let team = values_of(
            &clients
                .scorecard(subject(SubjectKind::Team, root))
                .await
                .expect("team"),
        );
        assert_eq!(
            (&team[&Metric::Partners], &team[&Metric::TeamDepth]),
            (&count(partners), &count(depth)),
            "team of {root}"
        );
    }
    let mentor_as_group = clients
        .scorecard(subject(SubjectKind::Group, "mentor"))
        .await
        .expect_err("a mentor is not a group");
    assert_eq!(
        (mentor_as_group.code(), mentor_as_group.message()),
        (
            Code::NotFound,
            "group `mentor` is unknown: no mentee has been assigned to a group of this id"
        )
    );
}

fn values_of(
    scorecard: &GetScorecardResponse,
) -> std::collections::BTreeMap<Metric, Option<metric_value::Value>> {
    scorecard
        .values
        .iter()
        .map(|value| (value.metric(), value.value.clone()))
        .collect()
}

/// Every KpiService RPC that takes a subject answers NOT_FOUND, naming its kind, for an id no
/// event named.
async fn assert_unknown_subjects_are_not_found(clients: &mut Clients<'_>) {
    let system = clients.system;
    let partner = "partner `nobody` is unknown: no accepted event names this partner";
    let team = "team root `nobody` is unknown: no accepted event names this partner";
    let group = "group `nobody` is unknown: no mentee has been assigned to a group of this id";
    let mut refusals: Vec<(&str, Status, &str)> = Vec::new();
    for (kind, expected) in [
        (SubjectKind::Partner, partner),
        (SubjectKind::Team, team),
        (SubjectKind::Group, group),
    ] {
        let status = clients
            .scorecard(subject(kind, "nobody"))
            .await
            .expect_err("unknown");
        refusals.push(("GetScorecard", status, expected));
        let status = clients
            .kpi
            .get_series(system.request(GetSeriesRequest {
                subject: subject(kind, "nobody"),
                metric: Metric::Orders.into(),
                granularity: Granularity::Day.into(),
                from: Some(mentorstream_proto::common::v1::LocalDate {
                    year: 2026,
                    month: 11,
                    day: 1,
                }),
                to: Some(mentorstream_proto::common::v1::LocalDate {
                    year: 2026,
                    month: 11,
                    day: 2,
                }),
            }))
            .await
            .expect_err("unknown");
        refusals.push(("GetSeries", status, expected));
        let status = clients
            .kpi
            .explain(system.request(ExplainRequest {
                subject: subject(kind, "nobody"),
                metric: Metric::Orders.into(),
                granularity: Granularity::Day.into(),
                date: Some(mentorstream_proto::common::v1::LocalDate {
                    year: 2026,
                    month: 11,
                    day: 1,
                }),
                page_size: 0,
                page_token: String::new(),
            }))
            .await
            .expect_err("unknown");
        refusals.push(("Explain", status, expected));
        let status = clients
            .kpi
            .watch_kpis(system.request(WatchKpisRequest {
                subjects: vec![subject(kind, "nobody").expect("subject")],
                windows: vec![],
            }))
            .await
            .expect_err("unknown");
        refusals.push(("WatchKpis", status, expected));
    }
    let status = clients
        .kpi
        .get_leaderboard(system.request(GetLeaderboardRequest {
            entry_kind: SubjectKind::Partner.into(),
            metric: Metric::Orders.into(),
            window: lifetime(),
            team_root_id: "nobody".into(),
            page_size: 0,
            page_token: String::new(),
        }))
        .await
        .expect_err("unknown");
    refusals.push(("GetLeaderboard", status, team));
    let status = clients
        .kpi
        .get_goal_progress(system.request(GetGoalProgressRequest {
            mentee_id: "nobody".into(),
            goal_ids: vec![],
        }))
        .await
        .expect_err("unknown");
    refusals.push(("GetGoalProgress", status, partner));
    let status = clients
        .kpi
        .get_journey(system.request(GetJourneyRequest {
            partner_id: "nobody".into(),
        }))
        .await
        .expect_err("unknown");
    refusals.push(("GetJourney", status, "partner `nobody` has no events yet"));
    let status = clients
        .scorecard(Some(Subject {
            kind: SubjectKind::Group.into(),
            id: String::new(),
            mentor_id: "nobody".into(),
        }))
        .await
        .expect_err("unknown");
    refusals.push((
        "GetScorecard by mentor",
        status,
        "mentor `nobody` has no group a mentee was ever assigned to",
    ));
    for (rpc, status, expected) in refusals {
        assert_eq!(
            (status.code(), status.message()),
            (Code::NotFound, expected),
            "{rpc}"
        );
    }
}
