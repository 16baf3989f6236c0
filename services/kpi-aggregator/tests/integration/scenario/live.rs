//! Driving a running aggregator: producing the scenario to its topic, waiting until it has
//! applied everything, and comparing its scorecards with the rules.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use mentorstream_config::{KafkaConfig, Topics};
use mentorstream_kafka::{CloudEvent, OutboundRecord, Producer};
use mentorstream_proto::activity::v1::ActivityEvent;
use mentorstream_proto::common::v1::{Decimal as LocalDecimal, LocalDate};
use mentorstream_proto::kpi::v1::kpi_service_client::KpiServiceClient;
use mentorstream_proto::kpi::v1::{
    ExplainRequest, GetJourneyRequest, GetJourneyResponse, GetLeaderboardRequest,
    GetScorecardRequest, GetScorecardResponse, GetSeriesRequest, Granularity, KpiSignal, KpiUpdate,
    Metric, Subject, SubjectKind, WatchKpisRequest, WatchKpisResponse, Window, WindowKind,
    metric_value,
};
use tonic::Request;
use tonic::transport::Channel;

use mentorstream_kpi_aggregator::signal::Payload as SignalPayload;
use mentorstream_proto::activity::v1::activity_event::Payload;

use super::{Events, Key, Record, event, feedback, mentorship, ping};

pub const WAIT: Duration = Duration::from_secs(60);

/// A KpiService client with a read key.
pub struct Reader {
    pub client: KpiServiceClient<Channel>,
    pub api_key: String,
}

impl Reader {
    pub async fn connect(addr: std::net::SocketAddr, api_key: String) -> Self {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match KpiServiceClient::connect(format!("http://{addr}")).await {
                Ok(client) => return Self { client, api_key },
                Err(error) => {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "no KpiService at {addr}: {error}"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// `message` with this reader's key.
    pub fn authorized<T>(&self, message: T) -> Request<T> {
        with_key(&self.api_key, message)
    }

    pub async fn scorecard(
        &mut self,
        kind: SubjectKind,
        id: &str,
        window: Window,
    ) -> Result<GetScorecardResponse, tonic::Status> {
        let request = self.authorized(GetScorecardRequest {
            subject: Some(Subject {
                kind: kind.into(),
                id: id.into(),
                mentor_id: String::new(),
            }),
            window: Some(window),
        });
        Ok(self.client.get_scorecard(request).await?.into_inner())
    }
}

impl Reader {
    pub async fn journey(&mut self, partner_id: &str) -> Result<GetJourneyResponse, tonic::Status> {
        let request = self.authorized(GetJourneyRequest {
            partner_id: partner_id.into(),
        });
        Ok(self.client.get_journey(request).await?.into_inner())
    }
}

/// Compares the journeys of a few partners with the rules: the earliest enrolment, first sale
/// and first time at each rank, whole days since enrolment, and the mentoring periods.
pub async fn assert_journeys(reader: &mut Reader, events: &Events) {
    let signals = super::expected_signals(&events.activity);
    for partner in ["ann", "bob", "x1", "n4"] {
        let journey = reader.journey(partner).await.expect("journey");
        assert!(journey.as_of.is_some());
        let enrolment = events
            .activity
            .iter()
            .filter(|event| {
                event.partner_id == partner
                    && matches!(event.payload, Some(Payload::PartnerEnrolled(_)))
            })
            .min_by_key(|event| {
                (
                    event.occurred_at.expect("time").seconds,
                    event.source_event_id.clone(),
                )
            })
            .expect("enrolled");
        let Some(Payload::PartnerEnrolled(enrolled)) = &enrolment.payload else {
            unreachable!()
        };
        assert_eq!(journey.sponsor_id, enrolled.sponsor_id, "{partner}");
        assert_eq!(journey.enrolled_at, enrolment.occurred_at, "{partner}");
        let of = |kind: &'static str| {
            signals
                .values()
                .filter(move |signal| signal.partner_id == partner)
                .filter(move |signal| match signal.payload {
                    SignalPayload::FirstSale { .. } => kind == "sale",
                    SignalPayload::RankAchieved { .. } => kind == "rank",
                    _ => false,
                })
        };
        match of("sale").next() {
            Some(sale) => {
                let SignalPayload::FirstSale {
                    days_to_first_sale, ..
                } = sale.payload
                else {
                    unreachable!()
                };
                assert!(journey.has_first_sale, "{partner}");
                assert_eq!(
                    journey.first_sale_at.expect("first sale").seconds,
                    sale.occurred_at.timestamp(),
                    "{partner}"
                );
                assert_eq!(journey.days_to_first_sale, days_to_first_sale, "{partner}");
            }
            None => assert!(!journey.has_first_sale, "{partner}"),
        }
        let mut ranks: Vec<(u32, String, i64, i64)> = of("rank")
            .map(|signal| match &signal.payload {
                SignalPayload::RankAchieved {
                    level,
                    name,
                    days_to_rank,
                } => (
                    *level,
                    name.clone(),
                    signal.occurred_at.timestamp(),
                    *days_to_rank,
                ),
                _ => unreachable!(),
            })
            .collect();
        ranks.sort();
        let answered: Vec<(u32, String, i64, i64)> = journey
            .ranks
            .iter()
            .map(|rank| {
                (
                    rank.rank_level,
                    rank.rank_name.clone(),
                    rank.reached_at.expect("reached").seconds,
                    rank.days_to_rank,
                )
            })
            .collect();
        assert_eq!(answered, ranks, "{partner}");
        assert_eq!(
            journey.current_rank_level,
            ranks.last().map_or(0, |rank| rank.0),
            "{partner}"
        );
        let periods: Vec<(String, String, i64, Option<i64>)> =
            super::mentor_periods(&events.mentorship, partner)
                .into_iter()
                .map(|(mentor, group, start, end)| {
                    (
                        mentor,
                        group,
                        start.timestamp(),
                        end.map(|end| end.timestamp()),
                    )
                })
                .collect();
        let answered: Vec<(String, String, i64, Option<i64>)> = journey
            .mentors
            .iter()
            .map(|period| {
                (
                    period.mentor_id.clone(),
                    period.group_id.clone(),
                    period.started_at.expect("start").seconds,
                    period.ended_at.map(|end| end.seconds),
                )
            })
            .collect();
        assert_eq!(answered, periods, "{partner}");
    }
    // ann: two ranks, two mentors (the transfer), a first sale.
    let ann = reader.journey("ann").await.expect("journey");
    assert_eq!((ann.ranks.len(), ann.mentors.len()), (2, 2));
    let unknown = reader.journey("nobody-here").await.expect_err("no events");
    assert_eq!(unknown.code(), tonic::Code::NotFound);
}

impl Reader {
    /// `(first day of the bucket, number)` of one metric (volumes in hundredths).
    pub async fn series(
        &mut self,
        kind: SubjectKind,
        id: &str,
        metric: Metric,
        granularity: Granularity,
        from: (i32, i32, i32),
        to: (i32, i32, i32),
    ) -> Vec<(String, i64)> {
        let date = |(year, month, day)| Some(LocalDate { year, month, day });
        let request = self.authorized(GetSeriesRequest {
            subject: Some(Subject {
                kind: kind.into(),
                id: id.into(),
                mentor_id: String::new(),
            }),
            metric: metric.into(),
            granularity: granularity.into(),
            from: date(from),
            to: date(to),
        });
        let answer = self
            .client
            .get_series(request)
            .await
            .expect("series")
            .into_inner();
        assert!(answer.as_of.is_some());
        answer
            .points
            .into_iter()
            .map(|point| {
                let start = point.bucket_start.expect("start");
                let number = match point.value.and_then(|value| value.value).expect("value") {
                    metric_value::Value::Count(count) => count,
                    metric_value::Value::Decimal(decimal) => {
                        decimal.value.replace('.', "").parse().expect("hundredths")
                    }
                    other => panic!("no fractions here: {other:?}"),
                };
                (
                    format!("{:04}-{:02}-{:02}", start.year, start.month, start.day),
                    number,
                )
            })
            .collect()
    }
}

impl Reader {
    /// Every page of a tenant-wide partner leaderboard, `page_size` at a time, as
    /// (rank, partner, number).
    pub async fn leaderboard(
        &mut self,
        metric: Metric,
        window: Window,
        page_size: u32,
    ) -> Vec<(u32, String, i64)> {
        self.ranking(SubjectKind::Partner, "", metric, window, page_size)
            .await
            .expect("leaderboard")
    }

    /// Every page of a leaderboard of `entry_kind` (within `team_root_id`'s team unless
    /// empty), `page_size` at a time, as (rank, id, number).
    pub async fn ranking(
        &mut self,
        entry_kind: SubjectKind,
        team_root_id: &str,
        metric: Metric,
        window: Window,
        page_size: u32,
    ) -> Result<Vec<(u32, String, i64)>, tonic::Status> {
        let mut entries = Vec::new();
        let mut page_token = String::new();
        loop {
            let request = self.authorized(GetLeaderboardRequest {
                entry_kind: entry_kind.into(),
                metric: metric.into(),
                window: Some(window),
                team_root_id: team_root_id.into(),
                page_size,
                page_token: page_token.clone(),
            });
            let answer = self.client.get_leaderboard(request).await?.into_inner();
            assert!(answer.as_of.is_some());
            assert!(answer.entries.len() <= page_size as usize);
            for entry in answer.entries {
                let number = match entry.value.and_then(|value| value.value).expect("value") {
                    metric_value::Value::Count(count) => count,
                    metric_value::Value::Decimal(decimal) => {
                        decimal.value.replace('.', "").parse().expect("hundredths")
                    }
                    other => panic!("no fractions here: {other:?}"),
                };
                let subject = entry.subject.expect("subject");
                assert_eq!(subject.kind, i32::from(entry_kind));
                entries.push((entry.rank, subject.id, number));
            }
            if answer.next_page_token.is_empty() {
                return Ok(entries);
            }
            page_token = answer.next_page_token;
        }
    }
}

/// Compares leaderboards of partners within a team and of groups (tenant-wide and within a
/// team), read page by page, with the ranking the rules give.
pub async fn assert_team_and_group_leaderboards(reader: &mut Reader, events: &Events) {
    let expected = events.expected();
    let rank = |totals: BTreeMap<String, i64>| -> Vec<(u32, String, i64)> {
        let mut ranking: Vec<(String, i64)> = totals
            .into_iter()
            .filter(|(_, value)| *value != 0)
            .collect();
        ranking.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        (1..)
            .zip(ranking)
            .map(|(rank, (id, value))| (rank, id, value))
            .collect()
    };
    for (root, metric, field, window_kind, anchor) in [
        (
            "n3",
            Metric::SalesVolume,
            "pv",
            WindowKind::Lifetime,
            (2026, 12, 31),
        ),
        (
            "n3",
            Metric::ActiveDays,
            "act",
            WindowKind::Month,
            (2026, 11, 10),
        ),
        (
            "root",
            Metric::Orders,
            "ord",
            WindowKind::Rolling30d,
            (2026, 12, 15),
        ),
    ] {
        let team = super::downline(&events.activity, root);
        let window_buckets = buckets(window_kind, anchor);
        let totals: BTreeMap<String, i64> = team
            .iter()
            .map(|partner| {
                let value = oracle(&expected, "c", partner, &window_buckets)
                    .get(field)
                    .copied()
                    .unwrap_or(0);
                (partner.clone(), value)
            })
            .collect();
        let ranking = rank(totals);
        assert!(
            ranking.len() > 2,
            "{root} {metric:?}: several partners rank"
        );
        assert_eq!(
            reader
                .ranking(
                    SubjectKind::Partner,
                    root,
                    metric,
                    window(window_kind, Some(anchor)),
                    2
                )
                .await
                .expect("team leaderboard"),
            ranking,
            "team {root} {metric:?} {window_kind:?}"
        );
    }
    for (team_root, metric, field, window_kind, anchor) in [
        ("", Metric::Orders, "ord", WindowKind::Month, (2026, 12, 1)),
        (
            "",
            Metric::SessionsMissed,
            "mis",
            WindowKind::Lifetime,
            (2026, 12, 31),
        ),
        (
            "",
            Metric::FeedbackCount,
            "fbc",
            WindowKind::Lifetime,
            (2026, 12, 31),
        ),
        (
            "n3",
            Metric::ActiveDays,
            "act",
            WindowKind::Lifetime,
            (2026, 12, 31),
        ),
    ] {
        let team = (!team_root.is_empty()).then(|| super::downline(&events.activity, team_root));
        let window_buckets = buckets(window_kind, anchor);
        let totals: BTreeMap<String, i64> = ["g-1", "g-2"]
            .into_iter()
            .filter_map(|group| {
                let (_, mentor) = super::members(&events.mentorship, group);
                let mentor = mentor.expect("a mentor");
                if team.as_ref().is_some_and(|team| !team.contains(&mentor)) {
                    return None;
                }
                let numbers = expected_numbers(
                    events,
                    &expected,
                    SubjectKind::Group,
                    "g",
                    group,
                    &window_buckets,
                );
                Some((group.to_owned(), numbers.get(field).copied().unwrap_or(0)))
            })
            .collect();
        let ranking = rank(totals);
        assert!(!ranking.is_empty());
        assert_eq!(
            reader
                .ranking(
                    SubjectKind::Group,
                    team_root,
                    metric,
                    window(window_kind, Some(anchor)),
                    1
                )
                .await
                .expect("group leaderboard"),
            ranking,
            "groups {team_root:?} {metric:?} {window_kind:?}"
        );
    }
}

/// Compares tenant-wide leaderboards, read page by page, with the ranking the rules give:
/// highest first, ties by partner id, partners at zero left out.
pub async fn assert_leaderboards(reader: &mut Reader, expected: &BTreeMap<Key, i64>) {
    for (metric, field, window_kind, anchor) in [
        (
            Metric::SalesVolume,
            "pv",
            WindowKind::Lifetime,
            (2026, 12, 31),
        ),
        (Metric::Orders, "ord", WindowKind::Month, (2026, 11, 15)),
        (
            Metric::ActiveDays,
            "act",
            WindowKind::Rolling7d,
            (2026, 12, 2),
        ),
        (Metric::Recruits, "rec", WindowKind::Month, (2026, 11, 26)),
    ] {
        let window_buckets = buckets(window_kind, anchor);
        let mut totals: BTreeMap<String, i64> = BTreeMap::new();
        for ((kind, partner, bucket, counter), value) in expected {
            if kind == "c" && counter == field && window_buckets.contains(bucket) {
                *totals.entry(partner.clone()).or_default() += value;
            }
        }
        let mut ranking: Vec<(String, i64)> = totals
            .into_iter()
            .filter(|(_, value)| *value != 0)
            .collect();
        ranking.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let expected_entries: Vec<(u32, String, i64)> = (1..)
            .zip(ranking)
            .map(|(rank, (partner, value))| (rank, partner, value))
            .collect();
        assert!(
            expected_entries.len() > 3,
            "{metric:?}: the scenario ranks several partners"
        );
        assert_eq!(
            reader
                .leaderboard(metric, window(window_kind, Some(anchor)), 4)
                .await,
            expected_entries,
            "{metric:?} {window_kind:?} {anchor:?}"
        );
    }
}

/// Compares a few series with `expected`: a partner's volume by day across a week boundary, by
/// month across a month boundary, and the whole tree's orders by ISO week.
pub async fn assert_series(reader: &mut Reader, expected: &BTreeMap<Key, i64>) {
    let value = |kind: &str, subject: &str, bucket: String, field: &str| {
        expected
            .get(&(
                kind.to_owned(),
                subject.to_owned(),
                bucket,
                field.to_owned(),
            ))
            .copied()
            .unwrap_or(0)
    };
    let days = reader
        .series(
            SubjectKind::Partner,
            "ann",
            Metric::SalesVolume,
            Granularity::Day,
            (2026, 11, 27),
            (2026, 12, 3),
        )
        .await;
    let expected_days: Vec<(String, i64)> = (27..=30)
        .map(|day| format!("2026-11-{day:02}"))
        .chain((1..=3).map(|day| format!("2026-12-{day:02}")))
        .map(|day| {
            let number = value("c", "ann", format!("d:{day}"), "pv");
            (day, number)
        })
        .collect();
    assert_eq!(days, expected_days);
    let months = reader
        .series(
            SubjectKind::Partner,
            "ann",
            Metric::Orders,
            Granularity::Month,
            (2026, 11, 30),
            (2026, 12, 1),
        )
        .await;
    assert_eq!(
        months,
        [
            (
                "2026-11-01".to_owned(),
                value("c", "ann", "m:2026-11".into(), "ord")
            ),
            (
                "2026-12-01".to_owned(),
                value("c", "ann", "m:2026-12".into(), "ord")
            ),
        ]
    );
    let weeks = reader
        .series(
            SubjectKind::Team,
            "root",
            Metric::Orders,
            Granularity::Week,
            (2026, 11, 26),
            (2026, 12, 2),
        )
        .await;
    assert_eq!(
        weeks,
        [
            (
                "2026-11-23".to_owned(),
                value("t", "root", "w:2026-W48".into(), "ord")
            ),
            (
                "2026-11-30".to_owned(),
                value("t", "root", "w:2026-W49".into(), "ord")
            ),
        ]
    );
    assert!(
        weeks.iter().all(|(_, orders)| *orders > 0),
        "the scenario has orders both weeks"
    );
}

/// Migrates the control database and creates tenant `acme` (Europe/Moscow) with a read key.
pub async fn create_tenant(tenants: &mentorstream_tenancy::Tenants) -> (String, String) {
    tenants.migrate().await.expect("migrate");
    let tenant = tenants
        .create_tenant(mentorstream_tenancy::NewTenant {
            name: "acme".into(),
            time_zone: "Europe/Moscow".into(),
            default_locale: "ru-RU".into(),
        })
        .await
        .expect("tenant");
    let key = tenants
        .create_key("acme", "read".parse().expect("scopes"))
        .await
        .expect("key");
    (tenant.tenant_id, key.api_key)
}

/// Produces `records` as ingest and the mentorship service would: activity keyed by tenant and
/// partner, mentorship events by tenant and mentee or session.
pub async fn produce(kafka: &KafkaConfig, records: &[Record]) {
    let producer = Producer::new(kafka, WAIT).expect("producer");
    for record in records {
        producer
            .send(&outbound(&kafka.topics, record))
            .await
            .expect("produced");
    }
}

/// A record nobody can decode, keyed like `event`.
pub async fn produce_poison(kafka: &KafkaConfig, event: &ActivityEvent) {
    let producer = Producer::new(kafka, WAIT).expect("producer");
    let mut poison = outbound(&kafka.topics, &Record::Activity(event.clone()));
    poison.payload = Some(vec![0xff, 0xff, 0xff]);
    producer.send(&poison).await.expect("produced");
}

fn outbound(topics: &Topics, record: &Record) -> OutboundRecord {
    let key = format!("{}/{}", record.tenant_id(), record.key());
    let cloud_event = |id: &str, event_type: &str| CloudEvent {
        id: id.to_owned(),
        event_type: event_type.to_owned(),
        source: "/tests/kpi".into(),
        time: Utc::now(),
    };
    match record {
        Record::Activity(event) => OutboundRecord::protobuf(
            &topics.activity,
            key,
            event,
            cloud_event(
                &event.source_event_id,
                "mentorstream.activity.v1.ActivityEvent",
            ),
        ),
        Record::Mentorship(event) => OutboundRecord::protobuf(
            &topics.mentorship,
            key,
            event,
            cloud_event(
                &event.event_id,
                "mentorstream.mentorship.v1.MentorshipEvent",
            ),
        ),
    }
}

/// After everything else, in every partition of both topics, an event of a partner of its
/// own: a ping on the activity topic, a feedback to a mentor on the mentorship topic. Once a
/// sentinel counts, every record before it in its partition is applied: records of a
/// partition are applied in order. The scorecards are then compared with the rules without
/// relying on `as_of`, whose own tests are elsewhere.
pub async fn produce_sentinels(kafka: &KafkaConfig, tenant_id: &str) -> Events {
    produce_named_sentinels(kafka, tenant_id, "sentinel").await
}

/// [`produce_sentinels`] for partners named `<name>-<partition>`.
pub async fn produce_named_sentinels(kafka: &KafkaConfig, tenant_id: &str, name: &str) -> Events {
    let producer = Producer::new(kafka, WAIT).expect("producer");
    let mut sentinels = Events::default();
    let base = name;
    for partition in 0..kafka.partitions {
        let name = format!("{base}-{partition}");
        let mut sentinel = event(&name, &name, "2026-12-20 12:00", ping());
        sentinel.tenant_id = tenant_id.to_owned();
        let record = Record::Activity(sentinel.clone());
        producer
            .send(&outbound(&kafka.topics, &record).to_partition(partition))
            .await
            .expect("sentinel produced");
        sentinels.activity.push(sentinel);

        let name = format!("mentor-{base}-{partition}");
        let mut sentinel = mentorship(
            &name,
            "2026-12-20 12:00",
            feedback(&name, &name, "nobody", 5),
        );
        sentinel.tenant_id = tenant_id.to_owned();
        let record = Record::Mentorship(sentinel.clone());
        producer
            .send(&outbound(&kafka.topics, &record).to_partition(partition))
            .await
            .expect("sentinel produced");
        sentinels.mentorship.push(sentinel);
    }
    sentinels
}

/// Waits until every sentinel counts and `as_of` is known.
pub async fn wait_for(reader: &mut Reader, sentinels: &Events) {
    let deadline = tokio::time::Instant::now() + WAIT * 2;
    let partners = sentinels
        .activity
        .iter()
        .map(|sentinel| sentinel.partner_id.clone())
        .chain(
            sentinels
                .mentorship
                .iter()
                .map(|sentinel| sentinel.event_id.clone()),
        );
    for partner in partners {
        loop {
            let answer = reader
                .scorecard(
                    SubjectKind::Partner,
                    &partner,
                    window(WindowKind::Lifetime, None),
                )
                .await;
            // Counted, and the progress of its batch recorded (that comes right after).
            if answer
                .as_ref()
                .is_ok_and(|answer| !numbers(answer).is_empty() && answer.as_of.is_some())
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{partner} never counted ({answer:?})"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Reads the signals topic until the latest signal of each id is exactly `expected` and the
/// TargetCrossed ids are exactly `crossings` (their values and times depend on when they were
/// crossed; a signal may be published again after a crash or a correction, with the same id).
pub async fn assert_signals(
    kafka: &KafkaConfig,
    expected: &BTreeMap<String, mentorstream_kpi_aggregator::signal::Signal>,
    crossings: &BTreeMap<String, (String, SubjectKind, String, String)>,
    goals_achieved: &std::collections::BTreeSet<String>,
) {
    use futures::StreamExt as _;
    let expected: BTreeMap<String, KpiSignal> = expected
        .iter()
        .map(|(id, signal)| (id.clone(), signal.to_proto()))
        .collect();
    let crossings: BTreeMap<String, (String, SubjectKind, String, String)> = crossings.clone();
    let group = mentorstream_testkit::unique("signals-reader");
    let consumer = mentorstream_kafka::Consumer::new(kafka, &group, &[&kafka.topics.kpi_signals])
        .expect("consumer");
    let mut stream = consumer.inner().stream();
    let mut latest: BTreeMap<String, KpiSignal> = BTreeMap::new();
    let mut crossed: BTreeMap<String, (String, SubjectKind, String, String)> = BTreeMap::new();
    let mut achieved = std::collections::BTreeSet::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while latest != expected || crossed != crossings || achieved != *goals_achieved {
        let message = tokio::time::timeout_at(deadline, stream.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "signals never matched: {} of {} ids seen, differing: {:?}; crossed {crossed:?}",
                    latest.len(),
                    expected.len(),
                    expected
                        .iter()
                        .filter(|(id, signal)| latest.get(*id) != Some(signal))
                        .take(3)
                        .collect::<Vec<_>>()
                )
            })
            .expect("stream")
            .expect("message");
        let signal: KpiSignal = mentorstream_kafka::InboundRecord::new(&message)
            .decode()
            .expect("a signal");
        match &signal.payload {
            Some(mentorstream_proto::kpi::v1::kpi_signal::Payload::TargetCrossed(crossing)) => {
                let subject = crossing.subject.clone().expect("subject");
                crossed.insert(
                    signal.signal_id.clone(),
                    (
                        crossing.target_id.clone(),
                        SubjectKind::try_from(subject.kind).expect("kind"),
                        subject.id,
                        signal.partner_id.clone(),
                    ),
                );
            }
            // When a goal is reached depends on the order its events are applied in.
            Some(mentorstream_proto::kpi::v1::kpi_signal::Payload::GoalAchieved(_)) => {
                achieved.insert(signal.signal_id.clone());
            }
            _ => {
                latest.insert(signal.signal_id.clone(), signal);
            }
        }
    }
}

/// `message` with `key`.
fn with_key<T>(key: &str, message: T) -> Request<T> {
    mentorstream_testkit::authorized(key, message)
}

/// Puts the scenario's targets through the API with an admin key, checking on the way that a
/// retried request changes nothing, invalid targets and read keys are refused, and that
/// targets list page by page and delete.
pub async fn put_targets(reader: &mut Reader, admin_key: &str) {
    use mentorstream_proto::kpi::v1::{
        DeleteTargetRequest, ListTargetsRequest, PutTargetRequest, Target as ProtoTarget,
    };
    let targets: Vec<ProtoTarget> = super::targets()
        .iter()
        .map(|target| target.to_proto())
        .collect();
    for (n, target) in targets.iter().enumerate() {
        let put = |target: ProtoTarget| PutTargetRequest {
            request_id: format!("put-{n}"),
            target: Some(target),
        };
        let answer = reader
            .client
            .put_target(with_key(admin_key, put(target.clone())))
            .await
            .expect("put")
            .into_inner();
        assert_eq!(answer.target.as_ref(), Some(target));
        // The same request id again, even with another body: the first answer, nothing written.
        let mut changed = target.clone();
        changed.threshold = Some(mentorstream_proto::common::v1::Decimal {
            value: "999".into(),
        });
        let again = reader
            .client
            .put_target(with_key(admin_key, put(changed)))
            .await
            .expect("put again")
            .into_inner();
        assert_eq!(again.target.as_ref(), Some(target));
    }
    let mut rolling = targets[0].clone();
    rolling.target_id = "rolling".into();
    rolling.window_kind = WindowKind::Rolling7d.into();
    let refused = reader
        .client
        .put_target(with_key(
            admin_key,
            PutTargetRequest {
                request_id: String::new(),
                target: Some(rolling),
            },
        ))
        .await
        .expect_err("rolling");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        refused.message(),
        "target.window_kind: rolling windows have no moment of crossing; use DAY, WEEK, MONTH or \
         LIFETIME"
    );
    let read_key = reader.api_key.clone();
    let forbidden = reader
        .client
        .put_target(with_key(
            &read_key,
            PutTargetRequest {
                request_id: String::new(),
                target: Some(targets[0].clone()),
            },
        ))
        .await
        .expect_err("read key");
    assert_eq!(forbidden.code(), tonic::Code::PermissionDenied);
    // Listed by id, two per page; a temporary target deletes once.
    let mut temporary = targets[0].clone();
    temporary.target_id = "temporary".into();
    reader
        .client
        .put_target(with_key(
            admin_key,
            PutTargetRequest {
                request_id: String::new(),
                target: Some(temporary),
            },
        ))
        .await
        .expect("put");
    let mut listed = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = reader
            .client
            .list_targets(with_key(
                &read_key,
                ListTargetsRequest {
                    page_size: 2,
                    page_token: page_token.clone(),
                },
            ))
            .await
            .expect("list")
            .into_inner();
        assert!(page.targets.len() <= 2);
        listed.extend(page.targets.into_iter().map(|target| target.target_id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(
        listed,
        [
            "temporary",
            "thirty-recruits",
            "twenty-orders",
            "two-orders"
        ]
    );
    let delete = || DeleteTargetRequest {
        target_id: "temporary".into(),
    };
    reader
        .client
        .delete_target(with_key(admin_key, delete()))
        .await
        .expect("deleted");
    let gone = reader
        .client
        .delete_target(with_key(admin_key, delete()))
        .await
        .expect_err("deleted before");
    assert_eq!(gone.code(), tonic::Code::NotFound);
}

/// Progress toward the lifetime targets in lifetime scorecards: the number and its share of
/// the threshold, at most 1.
pub async fn assert_target_progress(reader: &mut Reader, expected: &BTreeMap<Key, i64>) {
    for (kind, id, oracle_kind, target_id, field, threshold) in [
        (SubjectKind::Partner, "ann", "c", "two-orders", "ord", 2),
        (SubjectKind::Partner, "n4", "c", "two-orders", "ord", 2),
        (
            SubjectKind::Tenant,
            "",
            "tenant",
            "twenty-orders",
            "ord",
            20,
        ),
        (SubjectKind::Team, "n3", "t", "thirty-recruits", "rec", 30),
    ] {
        let answer = reader
            .scorecard(kind, id, window(WindowKind::Lifetime, None))
            .await
            .expect("scorecard");
        let value = oracle(expected, oracle_kind, id, &["life".into()])
            .get(field)
            .copied()
            .unwrap_or(0);
        let progress: Vec<(String, String, f64)> = answer
            .targets
            .iter()
            .map(|progress| {
                (
                    progress.target.as_ref().expect("target").target_id.clone(),
                    progress.value.as_ref().expect("value").value.clone(),
                    progress.progress,
                )
            })
            .collect();
        #[allow(clippy::cast_precision_loss)]
        let share = (value as f64 / f64::from(threshold)).min(1.0);
        assert_eq!(
            progress,
            [(target_id.to_owned(), value.to_string(), share)],
            "{kind:?} {id}"
        );
        // Other windows show no lifetime targets.
        let weekly = reader
            .scorecard(kind, id, window(WindowKind::Week, Some((2026, 11, 30))))
            .await
            .expect("scorecard");
        assert!(weekly.targets.is_empty());
    }
}

impl Reader {
    /// Every page of an Explain, `page_size` at a time, as (source, id, partner, amount in
    /// the counter's units), and the number explained.
    pub async fn explain(
        &mut self,
        kind: SubjectKind,
        id: &str,
        metric: Metric,
        granularity: Granularity,
        date: Date,
        page_size: u32,
    ) -> Result<(i64, Vec<(String, String, String, i64)>), tonic::Status> {
        let mut contributions = Vec::new();
        let mut page_token = String::new();
        loop {
            let request = self.authorized(ExplainRequest {
                subject: Some(Subject {
                    kind: kind.into(),
                    id: id.into(),
                    mentor_id: String::new(),
                }),
                metric: metric.into(),
                granularity: granularity.into(),
                date: Some(LocalDate {
                    year: date.0,
                    month: date.1,
                    day: date.2,
                }),
                page_size,
                page_token: page_token.clone(),
            });
            let answer = self.client.explain(request).await?.into_inner();
            assert!(answer.as_of.is_some());
            assert!(answer.contributions.len() <= page_size as usize);
            let hundredths = |text: &str| -> i64 {
                if metric == Metric::SalesVolume {
                    text.replace('.', "").parse().expect("hundredths")
                } else {
                    text.parse().expect("count")
                }
            };
            for contribution in answer.contributions {
                contributions.push((
                    contribution.source,
                    contribution.source_event_id,
                    contribution.partner_id,
                    hundredths(&contribution.amount.expect("amount").value),
                ));
            }
            if answer.next_page_token.is_empty() {
                let value = numbers_of(&answer.value.into_iter().collect::<Vec<_>>())
                    .into_values()
                    .next()
                    .unwrap_or(0);
                return Ok((value, contributions));
            }
            page_token = answer.next_page_token;
        }
    }
}

/// Explains a few numbers of partners and groups and compares them with the rules: the events
/// that contribute, in (occurred_at, source, id) order, with their parts, summing to the number.
pub async fn assert_explained(reader: &mut Reader, events: &Events) {
    let contributions = super::contributions(&events.activity, &events.mentorship);
    let key = |bucket: &str| bucket.to_owned();
    for (kind, id, metric, field, granularity, date, bucket, page_size) in [
        (
            SubjectKind::Partner,
            "ann",
            Metric::SalesVolume,
            "pv",
            Granularity::Week,
            (2026, 11, 26),
            key("w:2026-W48"),
            50,
        ),
        (
            SubjectKind::Partner,
            "ann",
            Metric::ActiveDays,
            "act",
            Granularity::Month,
            (2026, 11, 15),
            key("m:2026-11"),
            2,
        ),
        (
            SubjectKind::Partner,
            "n4",
            Metric::FeedbackCount,
            "fbc",
            Granularity::Week,
            (2026, 12, 3),
            key("w:2026-W49"),
            1,
        ),
        (
            SubjectKind::Partner,
            "n3",
            Metric::Recruits,
            "rec",
            Granularity::Month,
            (2026, 11, 1),
            key("m:2026-11"),
            3,
        ),
        (
            SubjectKind::Group,
            "g-2",
            Metric::Orders,
            "ord",
            Granularity::Month,
            (2026, 12, 1),
            key("m:2026-12"),
            1,
        ),
        (
            SubjectKind::Group,
            "g-1",
            Metric::ActiveDays,
            "act",
            Granularity::Week,
            (2026, 11, 29),
            key("w:2026-W48"),
            2,
        ),
        (
            SubjectKind::Group,
            "g-2",
            Metric::SessionsMissed,
            "mis",
            Granularity::Day,
            (2026, 12, 2),
            key("d:2026-12-02"),
            50,
        ),
    ] {
        let mut expected: Vec<(i64, String, String, String, i64)> = contributions
            .iter()
            .filter(|contribution| {
                contribution.field == field
                    && contribution.amount != 0
                    && super::buckets(contribution.at).contains(&bucket)
                    && match kind {
                        SubjectKind::Partner => contribution.partner == id,
                        _ => super::assignment(
                            &events.mentorship,
                            &contribution.partner,
                            Some(contribution.at),
                        )
                        .is_some_and(|(group, _)| group == id),
                    }
            })
            .map(|contribution| {
                (
                    contribution.at.timestamp(),
                    contribution.source.clone(),
                    contribution.id.clone(),
                    contribution.partner.clone(),
                    contribution.amount,
                )
            })
            .collect();
        expected.sort();
        let expected: Vec<(String, String, String, i64)> = expected
            .into_iter()
            .map(|(_, source, id, partner, amount)| (source, id, partner, amount))
            .collect();
        let (value, explained) = reader
            .explain(kind, id, metric, granularity, date, page_size)
            .await
            .expect("explained");
        assert_eq!(explained, expected, "{kind:?} {id} {metric:?} {bucket}");
        assert!(
            !explained.is_empty(),
            "{kind:?} {id} {metric:?} {bucket}: something to explain"
        );
        assert_eq!(
            value,
            explained
                .iter()
                .map(|(_, _, _, amount)| amount)
                .sum::<i64>(),
            "{kind:?} {id} {metric:?} {bucket}: the parts make the number"
        );
    }
    assert_teams_explained(reader, events).await;
}

/// A team's number is the root's own events, then each direct recruit's team (by id, zeros
/// left out); the tenant's, each top-level team: parts that make the rules' number.
async fn assert_teams_explained(reader: &mut Reader, events: &Events) {
    let expected = events.expected();
    let day = || vec!["d:2026-11-29".to_owned()];
    let team_orders = |root: &str| oracle(&expected, "t", root, &day()).get("ord").copied();
    let day_of = (2026, 11, 29);
    let (value, parts) = reader
        .explain(
            SubjectKind::Team,
            "root",
            Metric::Orders,
            Granularity::Day,
            day_of,
            2,
        )
        .await
        .expect("explained");
    let (_, own) = reader
        .explain(
            SubjectKind::Partner,
            "root",
            Metric::Orders,
            Granularity::Day,
            day_of,
            10,
        )
        .await
        .expect("explained");
    let recruits: std::collections::BTreeSet<String> = events
        .activity
        .iter()
        .filter_map(|event| match &event.payload {
            Some(Payload::PartnerEnrolled(enrolled)) if enrolled.sponsor_id == "root" => {
                Some(event.partner_id.clone())
            }
            _ => None,
        })
        .collect();
    let mut expected_parts = own;
    expected_parts.extend(recruits.iter().filter_map(|recruit| {
        team_orders(recruit).map(|orders| (String::new(), String::new(), recruit.clone(), orders))
    }));
    assert_eq!(parts, expected_parts, "team root's orders on 2026-11-29");
    assert!(
        parts.iter().any(|(source, ..)| source.is_empty()),
        "a recruit's team is a part"
    );
    assert_eq!(Some(value), team_orders("root"));
    assert_eq!(value, parts.iter().map(|(.., amount)| amount).sum::<i64>());
    let (value, parts) = reader
        .explain(
            SubjectKind::Tenant,
            "",
            Metric::Orders,
            Granularity::Day,
            day_of,
            10,
        )
        .await
        .expect("explained");
    assert_eq!(
        Some(value),
        oracle(&expected, "tenant", "", &day()).get("ord").copied()
    );
    assert_eq!(value, parts.iter().map(|(.., amount)| amount).sum::<i64>());
}

/// Deletes every key of one generation of the KPI state, as a Redis that lost data would.
pub async fn delete_generation(redis: &mentorstream_config::RedisConfig, generation: &str) {
    let connection = mentorstream_redis::connect(redis).expect("redis");
    let prefix = &redis.key_prefix;
    for pattern in [
        format!("{prefix}:{generation}:*"),
        format!("{{{prefix}:{generation}:*"),
    ] {
        let keys: Vec<String> = mentorstream_redis::cmd("KEYS")
            .arg(pattern)
            .query_async(&mut connection.clone())
            .await
            .expect("keys");
        let deletions = keys
            .into_iter()
            .map(|key| {
                let mut delete = mentorstream_redis::cmd("DEL");
                delete.arg(key);
                delete
            })
            .collect();
        connection.each(deletions).await.expect("deleted");
    }
}

/// Waits until the tenant's lifetime scorecard equals the rules (after a switch of generation).
pub async fn wait_for_tenant_totals(reader: &mut Reader, expected: &BTreeMap<Key, i64>) {
    let totals = oracle(expected, "tenant", "", &["life".into()]);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let answer = reader
            .scorecard(SubjectKind::Tenant, "", window(WindowKind::Lifetime, None))
            .await;
        if answer
            .as_ref()
            .is_ok_and(|answer| numbers(answer) == totals)
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the tenant totals never became {totals:?}: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Compares the scorecards of partners, groups, teams and the tenant in many windows with the
/// rules applied to `events`.
pub async fn assert_scorecards(reader: &mut Reader, events: &Events) {
    let expected = &events.expected();
    let windows = [
        (WindowKind::Day, (2026, 11, 29)),
        (WindowKind::Week, (2026, 11, 26)),
        (WindowKind::Week, (2026, 11, 30)),
        (WindowKind::Month, (2026, 11, 1)),
        (WindowKind::Month, (2026, 12, 31)),
        (WindowKind::Rolling7d, (2026, 12, 2)),
        (WindowKind::Rolling30d, (2026, 12, 15)),
        (WindowKind::Lifetime, (2026, 12, 31)),
    ];
    let subjects = [
        (SubjectKind::Partner, "ann", "c"),
        (SubjectKind::Partner, "bob", "c"),
        (SubjectKind::Partner, "n4", "c"),
        (SubjectKind::Group, "g-1", "g"),
        (SubjectKind::Group, "g-2", "g"),
        (SubjectKind::Team, "root", "t"),
        (SubjectKind::Team, "n3", "t"),
        (SubjectKind::Team, "n7", "t"),
        (SubjectKind::Tenant, "", "tenant"),
    ];
    for (kind, id, oracle_kind) in subjects {
        for (window_kind, anchor) in windows {
            let answer = reader
                .scorecard(kind, id, window(window_kind, Some(anchor)))
                .await
                .expect("scorecard");
            assert!(answer.as_of.is_some());
            assert_eq!(
                numbers(&answer),
                expected_numbers(
                    events,
                    expected,
                    kind,
                    oracle_kind,
                    id,
                    &buckets(window_kind, anchor)
                ),
                "{kind:?} {id} {window_kind:?} {anchor:?}"
            );
        }
    }
    // retention_30d of g-2 (ann and bob, enrolled 9 and 10 November) as of four days: before
    // either was enrolled 30 × 24 h, then with activity by both, by bob only, by neither (an
    // anchor still ahead of the clock counts eligibility up to now, docs/spec.md §6).
    for anchor in [(2026, 12, 1), (2026, 12, 15), (2027, 1, 3), (2027, 1, 10)] {
        let share = expected_retention(events, &["ann", "bob"], anchor);
        let answer = reader
            .scorecard(
                SubjectKind::Group,
                "g-2",
                window(WindowKind::Rolling30d, Some(anchor)),
            )
            .await
            .expect("scorecard");
        let retention = answer.values.iter().find_map(|value| {
            match (Metric::try_from(value.metric), value.value.as_ref()?) {
                (Ok(Metric::Retention30d), metric_value::Value::Fraction(share)) => {
                    Some(share.clone())
                }
                _ => None,
            }
        });
        assert_eq!(
            retention,
            Some(share),
            "retention_30d of g-2 as of {anchor:?}"
        );
    }
    // The scenario is not empty where it matters.
    assert!(
        oracle(expected, "tenant", "", &["life".into()])
            .get("pv")
            .is_some_and(|pv| *pv > 0)
    );
}

/// retention_30d of `mentees` for the 30 local days ending with `anchor`: of those enrolled
/// at least 30 × 24 h before the window ends (or before now, if sooner), those with an
/// activity event in those days; its value unset while nobody is eligible.
fn expected_retention(
    events: &Events,
    mentees: &[&str],
    anchor: (i32, i32, i32),
) -> mentorstream_proto::kpi::v1::Fraction {
    use chrono::TimeZone as _;
    let (year, month, day) = anchor;
    let (month, day) = (
        u32::try_from(month).expect("month"),
        u32::try_from(day).expect("day"),
    );
    let last = chrono::NaiveDate::from_ymd_opt(year, month, day).expect("date");
    let first = last - chrono::Days::new(29);
    let end = chrono_tz::Europe::Moscow
        .from_local_datetime(&(last + chrono::Days::new(1)).and_time(chrono::NaiveTime::MIN))
        .earliest()
        .expect("midnight")
        .with_timezone(&Utc)
        .min(Utc::now());
    let at = |event: &ActivityEvent| super::moment(event.occurred_at.as_ref());
    let (mut eligible, mut retained) = (0_u32, 0_u32);
    for mentee in mentees {
        let mine = || {
            events
                .activity
                .iter()
                .filter(|event| event.partner_id == *mentee)
        };
        let enrolled = mine()
            .filter(|event| matches!(event.payload, Some(Payload::PartnerEnrolled(_))))
            .map(at)
            .min();
        if enrolled.is_some_and(|enrolled| end - enrolled >= chrono::Duration::days(30)) {
            eligible += 1;
            let local = |event: &ActivityEvent| {
                at(event)
                    .with_timezone(&chrono_tz::Europe::Moscow)
                    .date_naive()
            };
            if mine().any(|event| (first..=last).contains(&local(event))) {
                retained += 1;
            }
        }
    }
    // The shares two mentees can have, written out.
    let value = match (retained, eligible) {
        (_, 0) => None,
        (0, _) => Some("0.0000"),
        (1, 2) => Some("0.5000"),
        (retained, eligible) if retained == eligible => Some("1.0000"),
        other => panic!("no share written out for {other:?}"),
    };
    mentorstream_proto::kpi::v1::Fraction {
        numerator: i64::from(retained),
        denominator: i64::from(eligible),
        value: value.map(|value| LocalDecimal {
            value: value.to_owned(),
        }),
    }
}

pub fn window(kind: WindowKind, anchor: Option<(i32, i32, i32)>) -> Window {
    Window {
        kind: kind.into(),
        anchor: anchor.map(|(year, month, day)| LocalDate { year, month, day }),
    }
}

/// The bucket keys a window sums, computed here from the rules (not from the service).
pub fn buckets(kind: WindowKind, anchor: (i32, i32, i32)) -> Vec<String> {
    use chrono::{Datelike, Days, NaiveDate};
    let day = NaiveDate::from_ymd_opt(
        anchor.0,
        anchor.1.try_into().expect("month"),
        anchor.2.try_into().expect("day"),
    )
    .expect("date");
    let rolling = |days: u64| {
        (0..days)
            .map(|back| format!("d:{}", day - Days::new(back)))
            .collect()
    };
    match kind {
        WindowKind::Day => vec![format!("d:{day}")],
        WindowKind::Week => vec![format!(
            "w:{}-W{:02}",
            day.iso_week().year(),
            day.iso_week().week()
        )],
        WindowKind::Month => vec![format!("m:{}-{:02}", day.year(), day.month())],
        WindowKind::Rolling7d => rolling(7),
        WindowKind::Rolling30d => rolling(30),
        WindowKind::Rolling90d => rolling(90),
        WindowKind::Lifetime => vec!["life".into()],
        WindowKind::Unspecified => panic!("no kind"),
    }
}

/// The scorecard's values as field → number (volumes in hundredths), to compare with the oracle.
/// What a scorecard of a subject should show in `window_buckets`, as [`numbers`] reads it.
pub fn expected_numbers(
    events: &Events,
    expected: &BTreeMap<Key, i64>,
    kind: SubjectKind,
    oracle_kind: &str,
    id: &str,
    window_buckets: &[String],
) -> BTreeMap<String, i64> {
    let mut numbers = oracle(expected, oracle_kind, id, window_buckets);
    if kind == SubjectKind::Group {
        // A group's feedback is its mentor's own; its size is its current mentees.
        let (mentees, mentor) = super::members(&events.mentorship, id);
        if let Some(mentor) = mentor {
            let mentor = oracle(expected, "c", &mentor, window_buckets);
            for field in ["fbs", "fbc"] {
                if let Some(value) = mentor.get(field) {
                    numbers.insert(field.to_owned(), *value);
                }
            }
        }
        if !mentees.is_empty() {
            numbers.insert("gsz".into(), i64::try_from(mentees.len()).expect("small"));
        }
    }
    numbers
}

/// Opens WatchKpis for `subjects` (kind, id) in `windows`.
pub async fn watch(
    reader: &mut Reader,
    subjects: &[(SubjectKind, &str)],
    windows: &[Window],
) -> tonic::Streaming<WatchKpisResponse> {
    let request = reader.authorized(WatchKpisRequest {
        subjects: subjects
            .iter()
            .map(|(kind, id)| Subject {
                kind: (*kind).into(),
                id: (*id).into(),
                mentor_id: String::new(),
            })
            .collect(),
        windows: windows.to_vec(),
    });
    reader
        .client
        .watch_kpis(request)
        .await
        .expect("watch")
        .into_inner()
}

/// (year, month, day)
pub type Date = (i32, i32, i32);

/// A watched key: subject kind, id, window kind and anchor.
type WatchKey = (i32, String, i32, Option<Date>);

fn watch_key(subject: Option<&Subject>, window: Option<&Window>) -> WatchKey {
    let subject = subject.expect("subject");
    let window = window.expect("window");
    (
        subject.kind,
        subject.id.clone(),
        window.kind,
        window.anchor.map(|day| (day.year, day.month, day.day)),
    )
}

/// Reads `stream` until the latest update of every watched key shows `expected` (the rules'
/// numbers); every update names a watched key.
pub async fn assert_watched(
    stream: &mut tonic::Streaming<WatchKpisResponse>,
    expected: &BTreeMap<WatchKey, BTreeMap<String, i64>>,
) {
    let mut latest: BTreeMap<WatchKey, BTreeMap<String, i64>> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while latest != *expected {
        let message = tokio::time::timeout_at(deadline, stream.message())
            .await
            .unwrap_or_else(|_| panic!("watched numbers never became {expected:?}: {latest:?}"))
            .expect("stream")
            .expect("open");
        let update = message.update.expect("update");
        let key = watch_key(update.subject.as_ref(), update.window.as_ref());
        assert!(expected.contains_key(&key), "unwatched {key:?}");
        latest.insert(key, numbers_of(&update.values));
    }
}

/// The expected watched numbers of `subjects` (kind, oracle kind, id) in `windows`.
pub fn expected_watched(
    events: &Events,
    expected: &BTreeMap<Key, i64>,
    subjects: &[(SubjectKind, &str, &str)],
    windows: &[(WindowKind, Option<Date>)],
) -> BTreeMap<WatchKey, BTreeMap<String, i64>> {
    let mut watched = BTreeMap::new();
    for (kind, oracle_kind, id) in subjects {
        for (window_kind, anchor) in windows {
            let window_buckets = match anchor {
                Some(anchor) => buckets(*window_kind, *anchor),
                None => vec!["life".to_owned()],
            };
            watched.insert(
                (
                    (*kind).into(),
                    (*id).to_owned(),
                    (*window_kind).into(),
                    *anchor,
                ),
                expected_numbers(events, expected, *kind, oracle_kind, id, &window_buckets),
            );
        }
    }
    watched
}

/// Reads the updates topic from the start until the latest update of each of `keys`
/// (`tenant/kind/id/bucket`) shows the rules' numbers.
pub async fn assert_updates_topic(
    kafka: &KafkaConfig,
    expected: &BTreeMap<String, BTreeMap<String, i64>>,
) {
    use futures::StreamExt as _;
    let group = mentorstream_testkit::unique("updates-reader");
    let consumer = mentorstream_kafka::Consumer::new(kafka, &group, &[&kafka.topics.kpi_updates])
        .expect("consumer");
    let mut stream = consumer.inner().stream();
    let mut latest: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while expected
        .iter()
        .any(|(key, numbers)| latest.get(key) != Some(numbers))
    {
        let message = tokio::time::timeout_at(deadline, stream.next())
            .await
            .unwrap_or_else(|_| {
                let differing: Vec<_> = expected
                    .iter()
                    .filter(|(key, numbers)| latest.get(*key) != Some(*numbers))
                    .map(|(key, numbers)| (key, numbers, latest.get(key)))
                    .collect();
                panic!("updates never matched: {differing:?}")
            })
            .expect("stream")
            .expect("message");
        let key = std::str::from_utf8(mentorstream_kafka::Message::key(&message).expect("key"))
            .expect("utf-8")
            .to_owned();
        // A tombstone (a bucket past its retention) removes the key.
        if mentorstream_kafka::Message::payload(&message).is_none() {
            latest.remove(&key);
            continue;
        }
        let update: KpiUpdate = mentorstream_kafka::InboundRecord::new(&message)
            .decode()
            .expect("an update");
        latest.insert(key, numbers_of(&update.values));
    }
}

pub fn numbers(scorecard: &GetScorecardResponse) -> BTreeMap<String, i64> {
    numbers_of(&scorecard.values)
}

/// Metric values as field → number (volumes in hundredths, feedback as the sum of ratings).
pub fn numbers_of(values: &[mentorstream_proto::kpi::v1::MetricValue]) -> BTreeMap<String, i64> {
    let field = |metric: Metric| match metric {
        Metric::Recruits => "rec",
        Metric::SalesVolume => "pv",
        Metric::Orders => "ord",
        Metric::ModulesCompleted => "mod",
        Metric::LearningMinutes => "min",
        Metric::EventsAttended => "evt",
        Metric::SessionsCompleted => "ses",
        Metric::SessionsMissed => "mis",
        Metric::FeedbackCount => "fbc",
        Metric::RankAdvancements => "rank",
        Metric::ActiveDays => "act",
        Metric::GroupSize => "gsz",
        Metric::FeedbackSum => "fbs",
        other => panic!("unexpected metric {other:?}"),
    };
    values
        .iter()
        .filter_map(|value| {
            let metric = Metric::try_from(value.metric).expect("known metric");
            if matches!(metric, Metric::Partners | Metric::TeamDepth) {
                // The genealogy's shape: compared where the test knows it.
                return None;
            }
            let number = match value.value.as_ref().expect("value") {
                metric_value::Value::Count(count) => *count,
                metric_value::Value::Decimal(decimal) => {
                    decimal.value.replace('.', "").parse().expect("hundredths")
                }
                // The feedback average's parts are FEEDBACK_SUM and FEEDBACK_COUNT.
                metric_value::Value::Fraction(average) if metric == Metric::FeedbackAvg => {
                    let sum = values.iter().find_map(|value| match value.value.as_ref()? {
                        metric_value::Value::Count(sum)
                            if value.metric == i32::from(Metric::FeedbackSum) =>
                        {
                            Some(*sum)
                        }
                        _ => None,
                    });
                    assert_eq!(Some(average.numerator), sum, "the average's numerator");
                    return None;
                }
                // Compared where the test knows its expected value.
                _ => return None,
            };
            Some((field(metric).to_owned(), number))
        })
        .filter(|(_, number)| *number != 0)
        .collect()
}

pub fn oracle(
    expected: &BTreeMap<Key, i64>,
    kind: &str,
    subject: &str,
    buckets: &[String],
) -> BTreeMap<String, i64> {
    let mut sums: BTreeMap<String, i64> = BTreeMap::new();
    for ((k, s, bucket, field), value) in expected {
        if k == kind && s == subject && buckets.contains(bucket) {
            *sums.entry(field.clone()).or_default() += value;
        }
    }
    sums.retain(|_, value| *value != 0);
    sums
}
