//! The end-to-end suite's harness: the four services as their own processes (as on
//! Kubernetes) on the real stack — or on a three-node Kafka cluster and a Redis of the test's
//! own, to break —
//! driven only through their public gRPC APIs and the `mentorstream` command, and compared
//! with the oracle of docs/spec.md §6. The tests live in `tests/tests/`.

#![allow(clippy::missing_panics_doc, clippy::unwrap_used)]

pub mod browser;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use chrono::{NaiveDate, Weekday};
use mentorstream_config::Config;
use mentorstream_proto::common::v1::LocalDate;
use mentorstream_proto::kpi::v1::kpi_service_client::KpiServiceClient;
use mentorstream_proto::kpi::v1::{
    GetScorecardRequest, Metric, Subject, SubjectKind, Window, WindowKind, metric_value,
};
use mentorstream_proto::notification::v1 as notification;
use mentorstream_proto::notification::v1::notification_service_client::NotificationServiceClient;
use mentorstream_sim::oracle::Key;
use mentorstream_testkit::{
    Host, KafkaCluster, PrivateRedis, ServiceProcess, SmtpSink, WebhookReceiver, fresh_database,
    unique,
};
use tonic::transport::Channel;

pub const WAIT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Service {
    Ingest,
    Mentorship,
    Kpi,
    Notifier,
}

impl Service {
    pub const ALL: [Service; 4] = [Self::Kpi, Self::Ingest, Self::Mentorship, Self::Notifier];

    fn binary(self) -> &'static str {
        match self {
            Self::Ingest => "mentorstream-ingest",
            Self::Mentorship => "mentorstream-mentorship",
            Self::Kpi => "mentorstream-kpi-aggregator",
            Self::Notifier => "mentorstream-notifier",
        }
    }

    /// The gRPC and admin ports of the service on the system's address (the production
    /// defaults').
    fn ports(self) -> (u16, u16) {
        match self {
            Self::Ingest => (50051, 9101),
            Self::Mentorship => (50052, 9102),
            Self::Kpi => (50053, 9103),
            Self::Notifier => (50054, 9104),
        }
    }

    fn section(self) -> &'static str {
        match self {
            Self::Ingest => "INGEST",
            Self::Mentorship => "MENTORSHIP",
            Self::Kpi => "KPI",
            Self::Notifier => "NOTIFIER",
        }
    }
}

/// A workspace binary next to the test's own (`target/<profile>/`).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .and_then(std::path::Path::parent)
        .unwrap()
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first (cargo build --workspace --bins; make test does)",
        path.display()
    );
    path
}

/// The whole system, each service its own process, listening on an address of the test's
/// own, so that a killed service starts again on the same port.
#[derive(Debug)]
pub struct System {
    pub config: Config,
    config_file: tempfile::NamedTempFile,
    processes: BTreeMap<Service, ServiceProcess>,
    host: Host,
    pub tenant_id: String,
    pub api_key: String,
    pub gateway: WebhookReceiver,
    pub sink: SmtpSink,
    pub broker: Option<KafkaCluster>,
    pub redis: Option<PrivateRedis>,
}

impl System {
    /// Starts every service on the shared stack, or (`private`) on a three-node Kafka cluster
    /// and a Redis of this test's own, creates a tenant (Europe/Moscow) with channels to a
    /// local gateway and mail server, and a key with the ingest, read and write scopes.
    pub async fn start(private: bool) -> Self {
        let (broker, redis) = if private {
            (
                Some(KafkaCluster::three().await),
                Some(PrivateRedis::start().await),
            )
        } else {
            (None, None)
        };
        let mut config = Config::load(None).unwrap();
        if let Some(broker) = &broker {
            config.kafka = broker.config(&config.kafka);
        }
        if let Some(redis) = &redis {
            config.redis.url = redis.url().into();
        }
        config.kafka.partitions = 3;
        config.kafka.topics.activity = unique("e2e.activity");
        config.kafka.topics.mentorship = unique("e2e.mentorship");
        config.kafka.topics.kpi_updates = unique("e2e.updates");
        config.kafka.topics.kpi_signals = unique("e2e.signals");
        config.redis.key_prefix = unique("e2e");
        let control = fresh_database(&config, "e2e_control").await;
        let mentorship = fresh_database(&config, "e2e_mentorship").await;
        let notifier = fresh_database(&config, "e2e_notifier").await;
        let host = Host::reserve();
        let kpi = format!("http://{}", host.addr(Service::Kpi.ports().0));
        let pages = format!("http://{}", host.addr(Service::Mentorship.ports().0));
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            file.path(),
            format!(
                "[kafka]\nbrokers = \"{brokers}\"\npartitions = 3\nreplication_factor = {replicas}\n\
                 [kafka.topics]\nactivity = \"{activity}\"\nmentorship = \"{mentorship_topic}\"\n\
                 kpi_updates = \"{updates}\"\nkpi_signals = \"{signals}\"\n\
                 {sessions}\
                 [redis]\nurl = \"{redis_url}\"\nkey_prefix = \"{prefix}\"\n\
                 [postgres]\nurl = \"{control}\"\n\
                 [mentorship]\ndatabase_url = \"{mentorship}\"\nkpi_endpoint = \"{kpi}\"\n\
                 dashboard_url = \"{pages}\"\nnewcomer_check_interval = \"1s\"\n\
                 [notifier]\ndatabase_url = \"{notifier}\"\nkpi_endpoint = \"{kpi}\"\n\
                 dispatch_interval = \"200ms\"\nsend_timeout = \"2s\"\nretry_base = \"1s\"\n\
                 retry_max = \"5s\"\n[shutdown]\ngrace_period = \"15s\"\n\
                 [actions]\nsigning_key = \"{action_key}\"\n",
                action_key = uuid::Uuid::new_v4().simple().to_string().repeat(2),
                brokers = config.kafka.brokers,
                replicas = config.kafka.replication_factor,
                sessions = mentorstream_testkit::SHORT_CONSUMER_SESSIONS,
                activity = config.kafka.topics.activity,
                mentorship_topic = config.kafka.topics.mentorship,
                updates = config.kafka.topics.kpi_updates,
                signals = config.kafka.topics.kpi_signals,
                redis_url = mentorstream_config::ExposeSecret::expose_secret(&config.redis.url),
                prefix = config.redis.key_prefix,
            ),
        )
        .unwrap();
        let config = Config::load(Some(file.path())).unwrap();
        let gateway = WebhookReceiver::start().await;
        let sink = SmtpSink::start().await;
        let mut system = Self {
            config,
            config_file: file,
            processes: BTreeMap::new(),
            host,
            tenant_id: String::new(),
            api_key: String::new(),
            gateway,
            sink,
            broker,
            redis,
        };
        system.cli_ok(&["admin", "migrate"]);
        let tenant = system.cli_json(&[
            "admin",
            "create-tenant",
            "--name",
            "acme",
            "--timezone",
            "Europe/Moscow",
            "--locale",
            "ru-RU",
        ]);
        system.tenant_id = tenant["tenant_id"].as_str().unwrap().to_owned();
        let key = system.cli_json(&[
            "admin",
            "create-key",
            "--tenant",
            "acme",
            "--scopes",
            "ingest,read,write",
        ]);
        system.api_key = key["api_key"].as_str().unwrap().to_owned();
        let (gateway_url, smtp_url) = (system.gateway.url(), system.sink.url());
        system.cli_ok(&[
            "admin",
            "set-channels",
            "--tenant",
            "acme",
            "--chatbot-url",
            &gateway_url,
            "--chatbot-secret",
            "e2e-gateway-secret-0123",
            "--smtp-url",
            &smtp_url,
            "--email-from",
            "mentors@acme.example",
            "--daily-cap",
            "1000",
        ]);
        for service in Service::ALL {
            system.restart(service);
        }
        system
    }

    /// `http://host:port` of a service's gRPC.
    pub fn endpoint(&self, service: Service) -> String {
        format!("http://{}", self.host.addr(service.ports().0))
    }

    /// `http://host:port` of a service's admin endpoint (`/metrics`, `/healthz`).
    pub fn admin(&self, service: Service) -> String {
        format!("http://{}", self.host.addr(service.ports().1))
    }

    /// Starts (or starts again) `service` on its addresses.
    pub fn restart(&mut self, service: Service) {
        let (grpc, admin) = service.ports();
        let (process, _) = ServiceProcess::start_at(
            binary(service.binary()).to_str().unwrap(),
            self.config_file.path(),
            service.section(),
            &[],
            &self.host.addr(grpc).to_string(),
            &self.host.addr(admin).to_string(),
        );
        self.processes.insert(service, process);
    }

    /// SIGKILL, at once.
    pub fn kill_9(&mut self, service: Service) {
        if let Some(mut process) = self.processes.remove(&service) {
            process.kill_9();
        }
    }

    /// SIGTERM to every service; each must exit cleanly.
    pub fn stop(&mut self) {
        for (_, mut process) in std::mem::take(&mut self.processes) {
            process.terminate();
        }
    }

    /// Runs `mentorstream` with this system's configuration; a run that takes longer than
    /// [`WAIT`] is killed and fails the test.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        use std::process::Stdio;
        let mut child = std::process::Command::new(binary("mentorstream"))
            .arg("--config")
            .arg(self.config_file.path())
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + WAIT;
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("mentorstream {args:?} did not finish within {WAIT:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        child.wait_with_output().unwrap()
    }

    pub fn cli_ok(&self, args: &[&str]) -> String {
        let output = self.cli(args);
        assert!(output.status.success(), "mentorstream {args:?}: {output:?}");
        String::from_utf8(output.stdout).unwrap()
    }

    /// A new key of `tenant` (the system's is `acme`) with every scope (ingest, read, write,
    /// admin).
    pub fn key_with_every_scope(&self, tenant: &str) -> String {
        let key = self.cli_json(&[
            "admin",
            "create-key",
            "--tenant",
            tenant,
            "--scopes",
            "ingest,read,write,admin",
        ]);
        key["api_key"].as_str().unwrap().to_owned()
    }

    pub fn cli_json(&self, args: &[&str]) -> serde_json::Value {
        let mut args = args.to_vec();
        args.push("--json");
        serde_json::from_str(&self.cli_ok(&args)).unwrap()
    }

    pub fn driver(&self) -> mentorstream_sim::Driver {
        mentorstream_sim::Driver::new(
            &self.endpoint(Service::Ingest),
            &self.endpoint(Service::Mentorship),
            &self.api_key,
        )
        .unwrap()
    }

    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        mentorstream_testkit::authorized(&self.api_key, message)
    }

    /// A channel to a service's gRPC, once it listens.
    pub async fn channel(&self, service: Service) -> Channel {
        connect(&self.endpoint(service)).await
    }

    pub async fn kpi(&self) -> KpiServiceClient<Channel> {
        KpiServiceClient::new(connect(&self.endpoint(Service::Kpi)).await)
    }

    pub async fn notifications(&self) -> NotificationServiceClient<Channel> {
        NotificationServiceClient::new(connect(&self.endpoint(Service::Notifier)).await)
    }

    /// Every notification of `recipient`, through the API.
    pub async fn notifications_of(&self, recipient: &str) -> Vec<notification::Notification> {
        let mut client = self.notifications().await;
        let mut all = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = client
                .list_notifications(self.request(notification::ListNotificationsRequest {
                    recipient_id: recipient.into(),
                    status: 0,
                    page_size: 500,
                    page_token: page_token.clone(),
                }))
                .await
                .unwrap()
                .into_inner();
            all.extend(page.notifications);
            if page.next_page_token.is_empty() {
                return all;
            }
            page_token = page.next_page_token;
        }
    }
}

impl System {
    /// Waits until every partner has a delivered feedback request for each session they
    /// attended, a congratulation on their first sale if they sold, and one on each rank they
    /// reached (the tenant's language is Russian), each cause once; checks that everything
    /// delivered reached the gateway or the mail server; the delivered notifications by id.
    pub async fn notifications_settle(
        &self,
        scenario: &mentorstream_sim::Scenario,
        report: &mentorstream_sim::Report,
        partners: &[String],
    ) -> BTreeMap<String, notification::Notification> {
        use mentorstream_sim::{Action, Payload};
        use notification::NotificationStatus;
        let mut requests: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut sellers: BTreeSet<String> = BTreeSet::new();
        let mut ranks: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
        for step in &scenario.steps {
            match &step.action {
                Action::CompleteSession { session, attendees } => {
                    for attendee in attendees {
                        requests
                            .entry(attendee.clone())
                            .or_default()
                            .insert(format!(
                                "session:{}:feedback-request",
                                report.created[session]
                            ));
                    }
                }
                Action::Activity(activity) => match &activity.payload {
                    Payload::Order { .. } => {
                        sellers.insert(activity.partner_id.clone());
                    }
                    Payload::Rank { level, .. } => {
                        ranks
                            .entry(activity.partner_id.clone())
                            .or_default()
                            .insert(*level);
                    }
                    _ => {}
                },
                _ => {}
            }
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut delivered = BTreeMap::new();
        for partner in partners {
            loop {
                let all = self.notifications_of(partner).await;
                let done = |subject: &str| {
                    all.iter()
                        .filter(|n| {
                            n.subject.starts_with(subject)
                                && n.status() == NotificationStatus::Delivered
                        })
                        .count()
                };
                let feedback: BTreeSet<String> = all
                    .iter()
                    .filter(|n| {
                        n.cause.ends_with(":feedback-request")
                            && n.status() == NotificationStatus::Delivered
                    })
                    .map(|n| n.cause.clone())
                    .collect();
                let want_feedback = requests.get(partner).cloned().unwrap_or_default();
                let want_sale = usize::from(sellers.contains(partner));
                let want_ranks = ranks.get(partner).map_or(0, BTreeSet::len);
                if feedback == want_feedback
                    && done("Поздравляем с первой продажей") == want_sale
                    && done("Поздравляем с рангом") == want_ranks
                {
                    let causes: BTreeSet<&str> = all.iter().map(|n| n.cause.as_str()).collect();
                    assert_eq!(causes.len(), all.len(), "{partner}: a cause twice");
                    for notification in all {
                        if notification.status() == NotificationStatus::Delivered {
                            delivered.insert(notification.notification_id.clone(), notification);
                        }
                    }
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{partner}: feedback {feedback:?} of {want_feedback:?}, first sale {} of \
                     {want_sale}, ranks {} of {want_ranks}",
                    done("Поздравляем с первой продажей"),
                    done("Поздравляем с рангом")
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        let received: BTreeSet<String> = self
            .gateway
            .received()
            .into_iter()
            .map(|request| request.idempotency_key)
            .chain(self.sink.received().into_iter().map(|email| {
                email
                    .message_id
                    .trim_end_matches("@mentorstream")
                    .to_owned()
            }))
            .collect();
        let missing: Vec<&String> = delivered
            .keys()
            .filter(|id| !received.contains(*id))
            .collect();
        assert!(
            missing.is_empty(),
            "delivered but never received: {missing:?}"
        );
        delivered
    }
}

async fn connect(endpoint: &str) -> Channel {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match Channel::from_shared(endpoint.to_owned())
            .unwrap()
            .connect()
            .await
        {
            Ok(channel) => return channel,
            Err(error) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{endpoint}: {error}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// `numerator / denominator` as the KPI API answers it: the parts, and the quotient to 4
/// places rounded half to even (worked out here with decimal arithmetic of its own).
pub fn fraction(numerator: i64, denominator: i64) -> mentorstream_proto::kpi::v1::Fraction {
    let value = (denominator != 0).then(|| {
        // Ten-thousandths, and what is left over, in exact integers.
        let scaled = i128::from(numerator) * 10_000;
        let denominator = i128::from(denominator);
        let floor = scaled.div_euclid(denominator);
        let left = scaled.rem_euclid(denominator) * 2;
        let rounded = if left > denominator || (left == denominator && floor % 2 != 0) {
            floor + 1
        } else {
            floor
        };
        let sign = if rounded < 0 { "-" } else { "" };
        let magnitude = rounded.unsigned_abs();
        mentorstream_proto::common::v1::Decimal {
            value: format!("{sign}{}.{:04}", magnitude / 10_000, magnitude % 10_000),
        }
    });
    mentorstream_proto::kpi::v1::Fraction {
        numerator,
        denominator,
        value,
    }
}

/// What every scorecard must say, from the oracle's counters.
#[derive(Debug, Clone)]
pub struct Expected {
    pub counters: BTreeMap<Key, i64>,
    /// Each group's mentor (by the service's group id).
    pub mentors: BTreeMap<String, String>,
    /// Each group's current mentees.
    pub sizes: BTreeMap<String, i64>,
}

/// The oracle's field of each counted metric.
const FIELDS: [(Metric, &str); 11] = [
    (Metric::Recruits, "rec"),
    (Metric::SalesVolume, "pv"),
    (Metric::Orders, "ord"),
    (Metric::ModulesCompleted, "mod"),
    (Metric::LearningMinutes, "min"),
    (Metric::EventsAttended, "evt"),
    (Metric::SessionsCompleted, "ses"),
    (Metric::SessionsMissed, "mis"),
    (Metric::FeedbackCount, "fbc"),
    (Metric::RankAdvancements, "rank"),
    (Metric::ActiveDays, "act"),
];

fn window(bucket: &str) -> Window {
    let date = |date: NaiveDate| Some(LocalDate::from(date));
    let (kind, anchor) = match bucket.split_once(':') {
        Some(("d", day)) => (WindowKind::Day, date(day.parse().unwrap())),
        Some(("w", week)) => {
            let (year, week) = week.split_once("-W").unwrap();
            let monday = NaiveDate::from_isoywd_opt(
                year.parse().unwrap(),
                week.parse().unwrap(),
                Weekday::Mon,
            )
            .unwrap();
            (WindowKind::Week, date(monday))
        }
        Some(("m", month)) => (
            WindowKind::Month,
            date(format!("{month}-01").parse().unwrap()),
        ),
        _ => (WindowKind::Lifetime, None),
    };
    Window {
        kind: kind.into(),
        anchor,
    }
}

impl Expected {
    /// Compares every (subject, bucket) the oracle has numbers for — day buckets for groups
    /// and the tenant only — with GetScorecard; the differences, empty when all agree.
    pub async fn mismatches(&self, system: &System) -> Vec<String> {
        let mut kpi = system.kpi().await;
        let subjects: BTreeSet<(String, String, String)> = self
            .counters
            .keys()
            .map(|(kind, subject, bucket, _)| (kind.clone(), subject.clone(), bucket.clone()))
            .filter(|(kind, _, bucket)| {
                !bucket.starts_with("d:") || kind == "g" || kind == "tenant"
            })
            .collect();
        let mut mismatches = Vec::new();
        for (kind, subject, bucket) in subjects {
            let subject_kind = match kind.as_str() {
                "c" => SubjectKind::Partner,
                "t" => SubjectKind::Team,
                "g" => SubjectKind::Group,
                _ => SubjectKind::Tenant,
            };
            let answer = kpi
                .get_scorecard(system.request(GetScorecardRequest {
                    subject: Some(Subject {
                        kind: subject_kind.into(),
                        id: subject.clone(),
                        mentor_id: String::new(),
                    }),
                    window: Some(window(&bucket)),
                }))
                .await;
            let values = match answer {
                Ok(answer) => answer.into_inner().values,
                Err(status) => {
                    mismatches.push(format!("{kind} {subject} {bucket}: {status}"));
                    continue;
                }
            };
            let counter = |kind: &str, subject: &str, field: &str| {
                self.counters
                    .get(&(kind.into(), subject.into(), bucket.clone(), field.into()))
                    .copied()
                    .unwrap_or(0)
            };
            // A group's feedback is its mentor's own.
            let (feedback_kind, feedback_subject) = if kind == "g" {
                ("c", self.mentors.get(&subject).cloned().unwrap_or_default())
            } else {
                (kind.as_str(), subject.clone())
            };
            for value in &values {
                let metric = value.metric();
                let expected = match metric {
                    Metric::FeedbackAvg => {
                        let count = counter(feedback_kind, &feedback_subject, "fbc");
                        let sum = counter(feedback_kind, &feedback_subject, "fbs");
                        Some(metric_value::Value::Fraction(fraction(sum, count)))
                    }
                    Metric::FeedbackCount => Some(metric_value::Value::Count(counter(
                        feedback_kind,
                        &feedback_subject,
                        "fbc",
                    ))),
                    Metric::FeedbackSum => Some(metric_value::Value::Count(counter(
                        feedback_kind,
                        &feedback_subject,
                        "fbs",
                    ))),
                    // The genealogy's shape is checked where the test knows it (truth.rs).
                    Metric::Partners | Metric::TeamDepth => continue,
                    Metric::GroupSize => Some(metric_value::Value::Count(
                        self.sizes.get(&subject).copied().unwrap_or(0),
                    )),
                    // Nobody in the simulated weeks was enrolled 30 days before.
                    Metric::Retention30d => Some(metric_value::Value::Fraction(fraction(0, 0))),
                    Metric::SalesVolume => {
                        let cents = counter(&kind, &subject, "pv");
                        Some(metric_value::Value::Decimal(
                            mentorstream_proto::common::v1::Decimal {
                                value: format!(
                                    "{}{}.{:02}",
                                    if cents < 0 { "-" } else { "" },
                                    cents.abs() / 100,
                                    cents.abs() % 100
                                ),
                            },
                        ))
                    }
                    other => {
                        FIELDS
                            .iter()
                            .find(|(metric, _)| *metric == other)
                            .map(|(_, field)| {
                                metric_value::Value::Count(counter(&kind, &subject, field))
                            })
                    }
                };
                if expected != value.value {
                    mismatches.push(format!(
                        "{kind} {subject} {bucket} {metric:?}: expected {expected:?}, got {:?}",
                        value.value
                    ));
                }
            }
        }
        mismatches
    }

    /// Waits until every number agrees (the services are still catching up before that);
    /// the differences left when the wait ends.
    pub async fn settle(&self, system: &System) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let mismatches = self.mismatches(system).await;
            if mismatches.is_empty() || tokio::time::Instant::now() > deadline {
                return mismatches;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// The oracle for `scenario` as the system received it (`created`: the ids it gave).
pub fn expected(
    scenario: &mentorstream_sim::Scenario,
    created: &BTreeMap<String, String>,
) -> Expected {
    use mentorstream_sim::oracle;
    let activity = oracle::accepted_activity(scenario);
    let mentorship = oracle::announced_mentorship(scenario, created);
    let counters = oracle::expected(
        &activity,
        &mentorship,
        mentorstream_sim::generate::TIME_ZONE,
    );
    let mut mentors = BTreeMap::new();
    let mut sizes = BTreeMap::new();
    for step in &scenario.steps {
        if let mentorstream_sim::Action::CreateGroup { group, mentor, .. } = &step.action
            && let Some(id) = created.get(group)
        {
            mentors.insert(id.clone(), mentor.clone());
            let (mentees, _) = oracle::members(&mentorship, id);
            sizes.insert(id.clone(), i64::try_from(mentees.len()).unwrap());
        }
    }
    Expected {
        counters,
        mentors,
        sizes,
    }
}
