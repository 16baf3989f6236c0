//! Tenant isolation on every HTTP route: with tenant A's data in every service, a key of
//! tenant B with every scope calls each documented route naming A's ids. Each answer is the
//! one expected (not found, an empty list, or B's own new thing), none contains anything of
//! A's, and afterwards everything A reads is as it was. The routes come from the services'
//! own `/openapi.json`, so a new route without a case here fails the test.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Duration, Utc};
use mentorstream_e2e::{Service, System, WAIT};
use mentorstream_ingest::webhook::signature::sign;
use serde_json::{Value, json};

/// Strings only tenant A's data holds: no answer to B may contain one.
const MARKERS: [&str; 7] = [
    "Secret-A root",
    "Secret-A mentee",
    "Secret-A topic",
    "Secret-A notes",
    "Secret-A comment",
    "Secret-A goal",
    "Secret-A stage",
];

/// What B's call must get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// This HTTP status (a refusal).
    Status(u16),
    /// 200 with the array at this JSON pointer empty or absent.
    Empty(&'static str),
    /// 200: the call acted in B's own tenant.
    Own,
}

struct Http {
    client: reqwest::Client,
}

impl Http {
    async fn post(&self, base: &str, path: &str, key: &str, body: &Value) -> (u16, String) {
        let answer = self
            .client
            .post(format!("{base}{path}"))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .expect("an answer");
        let status = answer.status().as_u16();
        (status, answer.text().await.expect("a body"))
    }

    /// 200 and its JSON, retrying while mentorship has not read the partner yet.
    async fn ok(&self, base: &str, path: &str, key: &str, body: &Value) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (status, text) = self.post(base, path, key, body).await;
            if status == 200 {
                return serde_json::from_str(&text).expect("JSON");
            }
            assert!(
                status == 503 && tokio::time::Instant::now() < deadline,
                "{path}: {status} {text}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }
}

fn rfc3339(time: chrono::DateTime<Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Tenant A's ids, by name.
type Ids = BTreeMap<&'static str, String>;

fn text(value: &Value, pointer: &str) -> String {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{pointer} in {value}"))
        .to_owned()
}

/// Tenant A: two partners, an order, a programme with a group, a completed and rated session
/// and an upcoming one, a plan with a goal, a module, preferences, a target, a webhook source,
/// and the notifications they caused.
async fn seed_tenant_a(system: &System, http: &Http, key: &str) -> Ids {
    let [ingest, mentorship, kpi, notifier] = [
        Service::Ingest,
        Service::Mentorship,
        Service::Kpi,
        Service::Notifier,
    ]
    .map(|service| system.endpoint(service));
    let now = Utc::now();
    let ago = |minutes: i64| rfc3339(now - Duration::minutes(minutes));
    let event = |id: &str, partner: &str, payload: Value| {
        let mut event = json!({
            "source": "crm", "sourceEventId": id, "partnerId": partner, "occurredAt": ago(180),
        });
        let (kind, body) = payload
            .as_object()
            .expect("one payload")
            .iter()
            .next()
            .expect("kind");
        event[kind] = body.clone();
        event
    };
    let answer = http
        .ok(&ingest, "/v1/ingest/Ingest", key, &json!({"events": [
            event("iso-e1", "iso-root", json!({"partnerEnrolled": {"displayName": "Secret-A root"}})),
            event("iso-e2", "iso-m1", json!({"partnerEnrolled": {"sponsorId": "iso-root", "displayName": "Secret-A mentee"}})),
            event("iso-o1", "iso-m1", json!({"orderPlaced": {"orderId": "iso-o1", "volume": {"value": "10"},
                "amount": {"amount": {"value": "10"}, "currencyCode": "EUR"}}})),
        ]}))
        .await;
    assert_eq!(
        answer["results"].as_array().map(Vec::len),
        Some(3),
        "{answer}"
    );
    let mut ids = Ids::new();
    let program = http
        .ok(&mentorship, "/v1/mentorship/CreateProgram", key,
            &json!({"requestId": "iso-program", "name": "Pilot A", "kind": "PROGRAM_KIND_PILOT", "sessionsPerWeek": 1}))
        .await;
    ids.insert("program", text(&program, "/program/programId"));
    http.ok(&mentorship, "/v1/impact/StartRolloutStage", key, &json!({"requestId": "iso-stage",
        "programId": ids["program"], "name": "Secret-A stage", "eligibility": {"teamRootIds": ["iso-root"]}}))
        .await;
    let group = http
        .ok(&mentorship, "/v1/mentorship/CreateGroup", key, &json!({"requestId": "iso-group",
            "programId": ids["program"], "mentorId": "iso-root", "name": "Group A", "capacity": 5, "occurredAt": ago(170)}))
        .await;
    ids.insert("group", text(&group, "/group/groupId"));
    http.ok(
        &mentorship,
        "/v1/mentorship/AssignMentee",
        key,
        &json!({"requestId": "iso-assign",
        "groupId": ids["group"], "menteeId": "iso-m1", "occurredAt": ago(160)}),
    )
    .await;
    let past = http
        .ok(&mentorship, "/v1/mentorship/ScheduleSession", key, &json!({"requestId": "iso-past",
            "groupId": ids["group"], "startsAt": ago(90), "topic": "Secret-A topic", "occurredAt": ago(100)}))
        .await;
    ids.insert("past", text(&past, "/session/sessionId"));
    http.ok(&mentorship, "/v1/mentorship/CompleteSession", key, &json!({"requestId": "iso-complete",
        "sessionId": ids["past"], "attendeeIds": ["iso-m1"], "notes": "Secret-A notes", "occurredAt": ago(30)}))
        .await;
    http.ok(&mentorship, "/v1/mentorship/SubmitFeedback", key, &json!({"requestId": "iso-feedback",
        "sessionId": ids["past"], "menteeId": "iso-m1", "rating": 5, "comment": "Secret-A comment", "occurredAt": ago(20)}))
        .await;
    let upcoming = http
        .ok(&mentorship, "/v1/mentorship/ScheduleSession", key, &json!({"requestId": "iso-upcoming",
            "groupId": ids["group"], "startsAt": rfc3339(now + Duration::hours(3)), "topic": "Secret-A topic"}))
        .await;
    ids.insert("upcoming", text(&upcoming, "/session/sessionId"));
    let plan = http
        .ok(
            &mentorship,
            "/v1/mentorship/CreatePlan",
            key,
            &json!({"requestId": "iso-plan", "menteeId": "iso-m1"}),
        )
        .await;
    ids.insert("plan", text(&plan, "/plan/planId"));
    let goal = http
        .ok(
            &mentorship,
            "/v1/mentorship/SetGoal",
            key,
            &json!({"requestId": "iso-goal", "planId": ids["plan"],
            "metric": "METRIC_ORDERS", "target": {"value": "3"}, "startsAt": ago(60),
            "dueAt": rfc3339(now + Duration::days(30)), "description": "Secret-A goal"}),
        )
        .await;
    ids.insert("goal", text(&goal, "/goal/goalId"));
    http.ok(
        &mentorship,
        "/v1/mentorship/CreateModule",
        key,
        &json!({"requestId": "iso-module",
        "moduleId": "iso-module", "title": "Module A", "minutes": 15}),
    )
    .await;
    http.ok(
        &notifier,
        "/v1/notification/UpdatePreferences",
        key,
        &json!({"preferences": {
        "partnerId": "iso-m1", "chatbotUserId": "tg-iso-m1", "locale": "en"}}),
    )
    .await;
    let target = http
        .ok(
            &kpi,
            "/v1/kpi/PutTarget",
            key,
            &json!({"requestId": "iso-target", "target": {
            "subjectKind": "SUBJECT_KIND_PARTNER", "metric": "METRIC_ORDERS",
            "windowKind": "WINDOW_KIND_MONTH", "threshold": {"value": "5"}}}),
        )
        .await;
    ids.insert("target", text(&target, "/target/targetId"));
    let source = http
        .ok(
            &ingest,
            "/v1/webhook/CreateWebhookSource",
            key,
            &json!({"name": "a-backoffice", "preset": "WEBHOOK_PRESET_TYPED_ENVELOPE"}),
        )
        .await;
    ids.insert("source", text(&source, "/source/sourceId"));
    // The upcoming session's reminders and the feedback request exist for A.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let listed = http
            .ok(
                &notifier,
                "/v1/notification/ListNotifications",
                key,
                &json!({"recipientId": "iso-m1"}),
            )
            .await;
        if let Some(id) = listed
            .pointer("/notifications/0/notificationId")
            .and_then(Value::as_str)
        {
            ids.insert("notification", id.to_owned());
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no notification for A"
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    ids
}

/// Every route with the body B sends (naming A's ids) and what B must get.
fn cases(ids: &Ids) -> Vec<(&'static str, Value, Expect)> {
    use Expect::{Empty, Own, Status};
    // 404 where the call looks up A's thing by id; 400 (FAILED_PRECONDITION) where the call
    // acts on a group, plan or partner that, for B, does not exist (GROUP_NOT_FOUND,
    // PLAN_NOT_FOUND, PARTNER_NOT_ENROLLED), as for any unknown id.
    let now = Utc::now();
    let later = rfc3339(now + Duration::hours(5));
    let partner = |id: &str| json!({"kind": "SUBJECT_KIND_PARTNER", "id": id});
    let group = json!({"kind": "SUBJECT_KIND_GROUP", "id": ids["group"]});
    let month = json!({"kind": "WINDOW_KIND_MONTH"});
    vec![
        // Ingest: B's events land in B, whatever ids they carry.
        (
            "/v1/ingest/Ingest",
            json!({"events": [{"source": "crm", "sourceEventId": "iso-o1",
            "partnerId": "iso-m1", "occurredAt": rfc3339(now - Duration::minutes(10)),
            "orderPlaced": {"orderId": "b-1", "volume": {"value": "99"}}}]}),
            Own,
        ),
        (
            "/v1/webhook/CreateWebhookSource",
            json!({"name": "a-backoffice", "preset": "WEBHOOK_PRESET_FLAT_CENTS"}),
            Own,
        ),
        (
            "/v1/webhook/GetWebhookSource",
            json!({"sourceId": ids["source"]}),
            Status(404),
        ),
        ("/v1/webhook/ListWebhookSources", json!({}), Own),
        (
            "/v1/webhook/UpdateWebhookMapping",
            json!({"sourceId": ids["source"], "preset": "WEBHOOK_PRESET_FLAT_CENTS"}),
            Status(404),
        ),
        (
            "/v1/webhook/RotateWebhookSecret",
            json!({"sourceId": ids["source"], "previousValidFor": "0s"}),
            Status(404),
        ),
        (
            "/v1/webhook/DeleteWebhookSource",
            json!({"sourceId": ids["source"]}),
            Status(404),
        ),
        // KPIs: A's subjects do not exist for B; B's own lists are empty.
        (
            "/v1/kpi/GetScorecard",
            json!({"subject": partner("iso-m1"), "window": month}),
            Status(404),
        ),
        (
            "/v1/kpi/GetSeries",
            json!({"subject": group, "metric": "METRIC_ORDERS", "granularity": "GRANULARITY_DAY"}),
            Status(404),
        ),
        (
            "/v1/kpi/GetLeaderboard",
            json!({"entryKind": "SUBJECT_KIND_PARTNER", "metric": "METRIC_ORDERS", "window": month, "teamRootId": "iso-root"}),
            Status(404),
        ),
        (
            "/v1/kpi/GetJourney",
            json!({"partnerId": "iso-m1"}),
            Status(404),
        ),
        (
            "/v1/kpi/WatchKpis",
            json!({"subjects": [partner("iso-m1")], "windows": [month]}),
            Status(404),
        ),
        (
            "/v1/kpi/Explain",
            json!({"subject": partner("iso-m1"), "metric": "METRIC_ORDERS", "granularity": "GRANULARITY_DAY",
            "date": {"year": 2026, "month": 1, "day": 1}}),
            Status(404),
        ),
        (
            "/v1/kpi/PutTarget",
            json!({"requestId": "iso-target", "target": {"subjectKind": "SUBJECT_KIND_TENANT",
            "metric": "METRIC_RECRUITS", "windowKind": "WINDOW_KIND_MONTH", "threshold": {"value": "1"}}}),
            Own,
        ),
        ("/v1/kpi/ListTargets", json!({}), Own),
        (
            "/v1/kpi/DeleteTarget",
            json!({"targetId": ids["target"]}),
            Status(404),
        ),
        (
            "/v1/kpi/GetGoalProgress",
            json!({"menteeId": "iso-m1", "goalIds": [ids["goal"]]}),
            Status(404),
        ),
        // Mentorship.
        (
            "/v1/mentorship/CreateProgram",
            json!({"requestId": "iso-program", "name": "Pilot B", "kind": "PROGRAM_KIND_PILOT", "sessionsPerWeek": 1}),
            Own,
        ),
        (
            "/v1/mentorship/GetProgram",
            json!({"programId": ids["program"]}),
            Status(404),
        ),
        ("/v1/mentorship/ListPrograms", json!({}), Own),
        (
            "/v1/mentorship/CreateGroup",
            json!({"requestId": "iso-group", "programId": ids["program"], "mentorId": "iso-root", "name": "X", "capacity": 5}),
            Status(400),
        ),
        (
            "/v1/mentorship/GetGroup",
            json!({"groupId": ids["group"]}),
            Status(404),
        ),
        (
            "/v1/mentorship/ListGroups",
            json!({"mentorId": "iso-root"}),
            Empty("/groups"),
        ),
        (
            "/v1/mentorship/AssignMentee",
            json!({"requestId": "b-assign", "groupId": ids["group"], "menteeId": "iso-m1"}),
            Status(400),
        ),
        (
            "/v1/mentorship/UnassignMentee",
            json!({"requestId": "b-unassign", "groupId": ids["group"], "menteeId": "iso-m1"}),
            Status(400),
        ),
        (
            "/v1/mentorship/TransferMentee",
            json!({"requestId": "b-transfer", "menteeId": "iso-m1", "fromGroupId": ids["group"], "toGroupId": "b-group"}),
            Status(400),
        ),
        (
            "/v1/mentorship/ListAssignments",
            json!({"groupId": ids["group"]}),
            Empty("/assignments"),
        ),
        (
            "/v1/mentorship/ScheduleSession",
            json!({"requestId": "b-schedule", "groupId": ids["group"], "startsAt": later}),
            Status(400),
        ),
        (
            "/v1/mentorship/RescheduleSession",
            json!({"requestId": "b-reschedule", "sessionId": ids["upcoming"], "startsAt": later}),
            Status(404),
        ),
        (
            "/v1/mentorship/CancelSession",
            json!({"requestId": "b-cancel", "sessionId": ids["upcoming"], "reason": "b"}),
            Status(404),
        ),
        (
            "/v1/mentorship/CompleteSession",
            json!({"requestId": "b-complete", "sessionId": ids["upcoming"], "attendeeIds": ["iso-m1"]}),
            Status(404),
        ),
        (
            "/v1/mentorship/RecordSessionMissed",
            json!({"requestId": "b-missed", "sessionId": ids["past"]}),
            Status(404),
        ),
        (
            "/v1/mentorship/RespondToSession",
            json!({"requestId": "b-respond", "sessionId": ids["upcoming"], "menteeId": "iso-m1", "response": "SESSION_RESPONSE_RESCHEDULE_REQUESTED"}),
            Status(404),
        ),
        (
            "/v1/mentorship/GetSession",
            json!({"sessionId": ids["past"]}),
            Status(404),
        ),
        (
            "/v1/mentorship/ListSessions",
            json!({"groupId": ids["group"]}),
            Empty("/sessions"),
        ),
        (
            "/v1/mentorship/SubmitFeedback",
            json!({"requestId": "b-feedback", "sessionId": ids["past"], "menteeId": "iso-m1", "rating": 1}),
            Status(404),
        ),
        (
            "/v1/mentorship/ListFeedback",
            json!({"sessionId": ids["past"]}),
            Empty("/feedback"),
        ),
        (
            "/v1/mentorship/CreatePlan",
            json!({"requestId": "b-plan", "menteeId": "iso-m1"}),
            Status(400),
        ),
        (
            "/v1/mentorship/GetPlan",
            json!({"planId": ids["plan"]}),
            Status(404),
        ),
        (
            "/v1/mentorship/SetGoal",
            json!({"requestId": "b-goal", "planId": ids["plan"], "metric": "METRIC_ORDERS",
            "target": {"value": "1"}, "startsAt": rfc3339(now), "dueAt": later}),
            Status(400),
        ),
        (
            "/v1/mentorship/CreateModule",
            json!({"requestId": "b-module", "moduleId": "iso-module", "title": "Module B", "minutes": 5}),
            Own,
        ),
        ("/v1/mentorship/ListModules", json!({}), Own),
        (
            "/v1/mentorship/GetPartner",
            json!({"partnerId": "iso-m1"}),
            Status(404),
        ),
        (
            "/v1/mentorship/ListUpline",
            json!({"partnerId": "iso-m1"}),
            Status(404),
        ),
        (
            "/v1/mentorship/ListDownline",
            json!({"partnerId": "iso-root"}),
            Status(404),
        ),
        // What mentoring changes: A's programmes are not B's; B has no newcomers and does not
        // know A's partners.
        (
            "/v1/impact/ComparePrograms",
            json!({"programA": ids["program"], "programB": "b-other",
                   "enrolledFrom": {"year": 2026, "month": 1, "day": 1},
                   "enrolledTo": {"year": 2026, "month": 12, "day": 31}}),
            Status(404),
        ),
        (
            "/v1/impact/AuditMentors",
            json!({"programId": ids["program"]}),
            Status(404),
        ),
        (
            "/v1/impact/ListNewcomers",
            json!({"programId": ids["program"]}),
            Empty("/newcomers"),
        ),
        (
            "/v1/impact/SuggestMentors",
            json!({"partnerId": "iso-m1"}),
            Status(400),
        ),
        (
            "/v1/impact/SetMilestoneTargets",
            json!({"requestId": "b-targets", "programId": ids["program"], "targets": {"firstSaleDays": 3}}),
            Status(404),
        ),
        (
            "/v1/impact/StartRolloutStage",
            json!({"requestId": "b-stage", "programId": ids["program"], "name": "B's stage"}),
            Status(404),
        ),
        (
            "/v1/impact/GetRollout",
            json!({"programId": ids["program"]}),
            Status(404),
        ),
        // B's key cannot get a dashboard link for A's partner.
        (
            "/v1/dashboard/CreateDashboardLink",
            json!({"partnerId": "iso-m1", "role": "DASHBOARD_ROLE_LEADER"}),
            Status(404),
        ),
        // A button's token is its own credential: B's key does not make a token.
        (
            "/v1/action/RedeemAction",
            json!({"token": "v1.e30.AAAA", "action": "ACTION_ATTEND"}),
            Status(401),
        ),
        // Notifications: B's view of the same partner id is B's own, empty one.
        (
            "/v1/notification/GetPreferences",
            json!({"partnerId": "iso-m1"}),
            Own,
        ),
        (
            "/v1/notification/UpdatePreferences",
            json!({"preferences": {"partnerId": "iso-m1", "email": "b@example.com"}}),
            Own,
        ),
        (
            "/v1/notification/ListNotifications",
            json!({"recipientId": "iso-m1"}),
            Empty("/notifications"),
        ),
        (
            "/v1/notification/RetryNotification",
            json!({"notificationId": ids["notification"]}),
            Status(404),
        ),
    ]
}

/// Waits until `as_of` (one for all tenants) has passed this moment.
async fn wait_until_applied(system: &System, http: &Http, key: &str) {
    let accepted = Utc::now();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let tenant = http
            .ok(
                &system.endpoint(Service::Kpi),
                "/v1/kpi/GetScorecard",
                key,
                &json!({"subject": {"kind": "SUBJECT_KIND_TENANT"}, "window": {"kind": "WINDOW_KIND_LIFETIME"}}),
            )
            .await;
        let as_of = tenant["asOf"]
            .as_str()
            .and_then(|text| chrono::DateTime::parse_from_rfc3339(text).ok());
        if as_of.is_some_and(|as_of| as_of >= accepted) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "as_of stayed at {as_of:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// What A reads of its data, without the moment it was read.
async fn snapshot(system: &System, http: &Http, key: &str, ids: &Ids) -> Vec<Value> {
    let reads = [
        (
            Service::Mentorship,
            "/v1/mentorship/GetSession",
            json!({"sessionId": ids["past"]}),
        ),
        (
            Service::Mentorship,
            "/v1/impact/GetRollout",
            json!({"programId": ids["program"]}),
        ),
        (
            Service::Mentorship,
            "/v1/mentorship/GetSession",
            json!({"sessionId": ids["upcoming"]}),
        ),
        (
            Service::Mentorship,
            "/v1/mentorship/GetGroup",
            json!({"groupId": ids["group"]}),
        ),
        (
            Service::Mentorship,
            "/v1/mentorship/ListFeedback",
            json!({"sessionId": ids["past"]}),
        ),
        (
            Service::Mentorship,
            "/v1/mentorship/GetPlan",
            json!({"planId": ids["plan"]}),
        ),
        (Service::Mentorship, "/v1/mentorship/ListModules", json!({})),
        (
            Service::Mentorship,
            "/v1/mentorship/ListPrograms",
            json!({}),
        ),
        (
            Service::Notifier,
            "/v1/notification/GetPreferences",
            json!({"partnerId": "iso-m1"}),
        ),
        (
            Service::Kpi,
            "/v1/kpi/GetScorecard",
            json!({"subject": {"kind": "SUBJECT_KIND_PARTNER", "id": "iso-m1"}, "window": {"kind": "WINDOW_KIND_LIFETIME"}}),
        ),
        (Service::Kpi, "/v1/kpi/ListTargets", json!({})),
        (
            Service::Ingest,
            "/v1/webhook/GetWebhookSource",
            json!({"sourceId": ids["source"]}),
        ),
    ];
    let mut answers = Vec::new();
    for (service, path, body) in reads {
        let mut answer = http.ok(&system.endpoint(service), path, key, &body).await;
        if let Some(object) = answer.as_object_mut() {
            object.remove("asOf");
        }
        answers.push(answer);
    }
    answers
}

#[tokio::test]
async fn a_key_of_one_tenant_reads_and_writes_nothing_of_another_on_any_route() {
    let mut system = System::start(false).await;
    let http = Http {
        client: reqwest::Client::new(),
    };
    let key_a = system.key_with_every_scope("acme");
    let ids = seed_tenant_a(&system, &http, &key_a).await;
    system.cli_json(&[
        "admin",
        "create-tenant",
        "--name",
        "globex",
        "--timezone",
        "Europe/Berlin",
    ]);
    let key_b = system.key_with_every_scope("globex");
    // Everything of A's is applied before A's view is taken (a plan's goals show their live
    // progress only then).
    wait_until_applied(&system, &http, &key_a).await;
    let before = snapshot(&system, &http, &key_a, &ids).await;

    let cases = cases(&ids);
    let mut documented = BTreeSet::new();
    for service in Service::ALL {
        let document: Value = reqwest::get(format!("{}/openapi.json", system.endpoint(service)))
            .await
            .expect("document")
            .json()
            .await
            .expect("JSON");
        for path in document["paths"].as_object().expect("paths").keys() {
            documented.insert(path.clone());
        }
    }
    let covered: BTreeSet<String> = cases
        .iter()
        .map(|(path, _, _)| (*path).to_owned())
        .collect();
    assert_eq!(
        covered, documented,
        "every documented route has an isolation case"
    );

    // Every service's routes by their prefix; a prefix nobody serves fails here rather than
    // meeting "no JSON method" (a 404 that would pass for a refusal).
    let service_of = |path: &str| match path.split('/').nth(2) {
        Some("ingest" | "webhook") => Service::Ingest,
        Some("kpi") => Service::Kpi,
        Some("mentorship" | "action" | "dashboard" | "impact") => Service::Mentorship,
        Some("notification") => Service::Notifier,
        other => panic!("{path}: no service serves {other:?}"),
    };
    let mut wrong = Vec::new();
    for (path, body, expect) in &cases {
        let (status, text) = http
            .post(&system.endpoint(service_of(path)), path, &key_b, body)
            .await;
        let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let fits = match expect {
            Expect::Status(expected) => status == *expected,
            Expect::Own => status == 200,
            Expect::Empty(pointer) => {
                status == 200
                    && answer
                        .pointer(pointer)
                        .is_none_or(|list| list.as_array().is_some_and(Vec::is_empty))
            }
        };
        if !fits {
            wrong.push(format!("{path}: expected {expect:?}, got {status} {text}"));
        }
        if let Some(marker) = MARKERS.iter().find(|marker| text.contains(*marker)) {
            wrong.push(format!("{path}: B's answer shows A's `{marker}`: {text}"));
        }
    }
    // A delivery to A's webhook source signed with B's own source's secret is not believed.
    let b_source = http
        .ok(
            &system.endpoint(Service::Ingest),
            "/v1/webhook/CreateWebhookSource",
            &key_b,
            &json!({"name": "b-shop", "preset": "WEBHOOK_PRESET_TYPED_ENVELOPE"}),
        )
        .await;
    let body = br#"{"type": "order.created"}"#;
    let timestamp = Utc::now().timestamp();
    let signature = sign(&text(&b_source, "/secret"), "b-1", timestamp, body).expect("sign");
    let delivered = http
        .client
        .post(format!(
            "{}/v1/webhooks/{}",
            system.endpoint(Service::Ingest),
            ids["source"]
        ))
        .header("webhook-id", "b-1")
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body.to_vec())
        .send()
        .await
        .expect("answer");
    if delivered.status().as_u16() != 401 {
        wrong.push(format!(
            "/v1/webhooks/{{A's source}}: {}",
            delivered.status()
        ));
    }
    assert!(
        wrong.is_empty(),
        "{} routes leak across tenants:\n{}",
        wrong.len(),
        wrong.join("\n")
    );

    // B's events are applied (as_of is one for all tenants), and A reads what it read before.
    wait_until_applied(&system, &http, &key_b).await;
    assert_eq!(snapshot(&system, &http, &key_a, &ids).await, before);
    system.stop();
}
