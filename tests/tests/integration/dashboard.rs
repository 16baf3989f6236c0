//! The dashboards in a real browser (Debian's chromium through playwright-core): a seeded
//! company's mentor and leader pages show exactly the numbers computed here from the events
//! the test sent; an order ingested while the mentor's page is open changes its numbers with
//! no reload; a link opens only what its partner may see (page and every data request 403
//! otherwise, with nothing of the other team in the answer); expired and tampered links are
//! refused; frame ancestors follow the tenant's setting. The pages are photographed in both
//! languages (`make screenshots` copies them to docs/dashboards/).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, TimeZone as _, Utc};
use mentorstream_actions::Signer;
use mentorstream_actions::dashboard::{LinkClaims, Role};
use mentorstream_config::ExposeSecret as _;
use mentorstream_e2e::browser::Browser;
use mentorstream_e2e::{Service, System, WAIT};
use mentorstream_proto::activity::v1::activity_event::Payload;
use mentorstream_proto::activity::v1::{ActivityEvent, OrderPlaced, PartnerEnrolled};
use mentorstream_proto::common::v1::{Decimal, Money};
use mentorstream_proto::kpi::v1::Metric;
use mentorstream_proto::mentorship::v1::dashboard_service_client::DashboardServiceClient;
use mentorstream_proto::mentorship::v1::{
    CompleteSessionRequest, CreateDashboardLinkRequest, CreateDashboardLinkResponse,
    CreatePlanRequest, DashboardRole, GetPlanRequest, ScheduleSessionRequest, SetGoalRequest,
    SubmitFeedbackRequest,
};
use serde_json::{Value, json};
use tonic::Code;

use crate::truth::{Clients, timestamp};

/// Who is in the seeded company: (id, display name, sponsor). `yuri` leads another team;
/// `olga` of his team is a mentee of `denis` of the leader's.
const PEOPLE: [(&str, &str, &str); 9] = [
    ("leader", "Larisa Leader", ""),
    ("mentor", "Marat Mentor", "leader"),
    ("anna", "Anna Newcomer", "mentor"),
    ("boris", "Boris Newcomer", "mentor"),
    ("clara", "Clara Newcomer", "mentor"),
    ("denis", "Denis Direct", "leader"),
    ("yuri", "Yuri Otherteam", ""),
    ("zoya", "Zoya Otherteam", "yuri"),
    ("olga", "Olga Otherteam", "yuri"),
];
const MENTEES: [&str; 3] = ["anna", "boris", "clara"];
/// The orders: (partner, volume in hundredths).
const ORDERS: [(&str, i64); 8] = [
    ("anna", 10_050),
    ("anna", 2_000),
    ("boris", 3_525),
    ("denis", 1_000),
    ("leader", 500),
    ("yuri", 99_999),
    ("zoya", 777),
    ("olga", 4_242),
];
/// Who attended the mentor's session, and the ratings they gave.
const RATINGS: [(&str, u32); 2] = [("anna", 5), ("boris", 4)];
/// Who attended Denis's session (of his group with Olga from Yuri's team), and her rating.
const DENIS_RATINGS: [(&str, u32); 1] = [("olga", 3)];
/// What no answer to the mentor's or leader's link may contain: the other team.
const OTHER_TEAM: [&str; 8] = [
    "yuri", "Yuri", "zoya", "Zoya", "olga", "Olga", "999.99", "42.42",
];
/// Anna's development-plan goal: this much sales volume within 30 days from today.
const ANNA_GOAL_TARGET: &str = "500.00";

fn moscow() -> chrono_tz::Tz {
    chrono_tz::Europe::Moscow
}

/// Instants spread over today (Moscow) up to now, in order: every event of the seed falls on
/// the page's local day, this week and this month.
struct Timeline {
    day_start: DateTime<Utc>,
    span: chrono::Duration,
}

impl Timeline {
    fn today() -> Self {
        let now = Utc::now();
        let local = now.with_timezone(&moscow()).date_naive();
        let midnight = moscow()
            .from_local_datetime(&local.and_hms_opt(0, 0, 0).expect("present"))
            .earliest()
            .expect("present")
            .with_timezone(&Utc);
        Self {
            day_start: midnight,
            span: now - midnight,
        }
    }

    /// The instant `tenths`/10 of the way from midnight to the start of the test.
    fn at(&self, tenths: i32) -> DateTime<Utc> {
        self.day_start + self.span * tenths / 10
    }

    fn date(&self) -> String {
        self.day_start
            .with_timezone(&moscow())
            .date_naive()
            .to_string()
    }
}

fn activity(id: &str, partner_id: &str, at: DateTime<Utc>, payload: Payload) -> ActivityEvent {
    ActivityEvent {
        source: "crm".into(),
        source_event_id: id.into(),
        occurred_at: timestamp(at),
        partner_id: partner_id.into(),
        payload: Some(payload),
        ..ActivityEvent::default()
    }
}

fn order(id: &str, partner_id: &str, hundredths: i64, at: DateTime<Utc>) -> ActivityEvent {
    let volume = || {
        Some(Decimal {
            value: money(hundredths),
        })
    };
    activity(
        id,
        partner_id,
        at,
        Payload::OrderPlaced(OrderPlaced {
            order_id: id.into(),
            volume: volume(),
            amount: Some(Money {
                amount: volume(),
                currency_code: "EUR".into(),
            }),
        }),
    )
}

/// Hundredths as the aggregator writes a sales volume: `155.75`.
fn money(hundredths: i64) -> String {
    format!("{}.{:02}", hundredths / 100, hundredths % 100)
}

fn volume_of(partners: &[&str]) -> i64 {
    ORDERS
        .iter()
        .filter(|(partner, _)| partners.contains(partner))
        .map(|(_, hundredths)| hundredths)
        .sum()
}

fn orders_of(partners: &[&str]) -> usize {
    ORDERS
        .iter()
        .filter(|(partner, _)| partners.contains(partner))
        .count()
}

/// Everyone at or below `root` in the seeded sponsor tree.
fn team_of(root: &'static str) -> Vec<&'static str> {
    let mut team = vec![root];
    let mut next = 0;
    while let Some(&sponsor) = team.get(next) {
        team.extend(
            PEOPLE
                .iter()
                .filter(|(_, _, their_sponsor)| *their_sponsor == sponsor)
                .map(|(id, _, _)| *id),
        );
        next += 1;
    }
    team
}

/// What the seeded company's pages must say, computed from the constants above.
struct Expected {
    group_week_volume: String,
    feedback_avg: String,
    mentee_volumes: BTreeMap<&'static str, String>,
    team_volume: String,
    team_orders: String,
    team_recruits: String,
    leaderboard: Vec<(String, String)>,
    sold: usize,
    not_sold: usize,
}

fn expected() -> Expected {
    let team = team_of("leader");
    let ratings: u32 = RATINGS.iter().map(|(_, rating)| rating).sum();
    let count = u32::try_from(RATINGS.len()).expect("present");
    let ten_thousandths = ratings * 10_000 / count;
    let mut board: Vec<(String, i64)> = team
        .iter()
        .map(|partner| ((*partner).to_owned(), volume_of(&[partner])))
        .filter(|(_, volume)| *volume > 0)
        .collect();
    board.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let sold = team
        .iter()
        .filter(|partner| orders_of(&[partner]) > 0)
        .count();
    Expected {
        group_week_volume: money(volume_of(&MENTEES)),
        feedback_avg: format!(
            "{}.{:04}",
            ten_thousandths / 10_000,
            ten_thousandths % 10_000
        ),
        mentee_volumes: MENTEES
            .iter()
            .map(|mentee| (*mentee, money(volume_of(&[mentee]))))
            .collect(),
        team_volume: money(volume_of(&team)),
        team_orders: orders_of(&team).to_string(),
        // Everyone in the team but its root was recruited by someone in it.
        team_recruits: (team.len() - 1).to_string(),
        leaderboard: board
            .into_iter()
            .map(|(partner, volume)| (partner, money(volume)))
            .collect(),
        sold,
        not_sold: team.len() - sold,
    }
}

/// What the seed created that the pages name.
struct Seeded {
    group_id: String,
    anna_goal: String,
}

/// Enrolments, three groups, two rated sessions, a goal for Anna and the orders, all today;
/// returns once the KPI service counts every order and Anna's goal.
async fn seed(clients: &mut Clients<'_>, timeline: &Timeline) -> Seeded {
    let enrolments = PEOPLE
        .iter()
        .map(|(id, name, sponsor)| {
            activity(
                &format!("enrol-{id}"),
                id,
                timeline.at(1),
                Payload::PartnerEnrolled(PartnerEnrolled {
                    sponsor_id: (*sponsor).into(),
                    display_name: (*name).into(),
                    ..PartnerEnrolled::default()
                }),
            )
        })
        .collect();
    clients.ingest(enrolments).await;
    let program_id = clients.pilot_program("Dashboards").await;
    let at = timestamp(timeline.at(2));
    let group_id = clients.group_at(&program_id, "mentor", &MENTEES, at).await;
    clients.group_at(&program_id, "yuri", &["zoya"], at).await;
    let denis_group = clients.group_at(&program_id, "denis", &["olga"], at).await;
    let anna_goal = goal(clients, "anna", timeline).await;
    rated_session(clients, &group_id, "mentor", &RATINGS, timeline).await;
    rated_session(clients, &denis_group, "denis", &DENIS_RATINGS, timeline).await;
    let orders = ORDERS
        .iter()
        .enumerate()
        .map(|(n, (partner, hundredths))| {
            order(&format!("order-{n}"), partner, *hundredths, timeline.at(6))
        })
        .collect();
    let accepted = clients.ingest(orders).await;
    clients.wait_as_of(accepted).await;
    let anna = money(volume_of(&["anna"]));
    wait_goal_progress(clients, "anna", &anna_goal, &anna).await;
    Seeded {
        group_id,
        anna_goal,
    }
}

/// A session of the whole group, completed with `ratings`' mentees attending, each rating it.
async fn rated_session(
    clients: &mut Clients<'_>,
    group_id: &str,
    tag: &str,
    ratings: &[(&str, u32)],
    timeline: &Timeline,
) {
    let system = clients.system;
    let mut mentorship = clients.mentorship.clone();
    let session = mentorship
        .schedule_session(system.request(ScheduleSessionRequest {
            request_id: format!("dashboard-session-{tag}"),
            group_id: group_id.into(),
            mentee_ids: vec![],
            starts_at: timestamp(timeline.at(3)),
            duration: None,
            topic: "First customers".into(),
            module_id: String::new(),
            occurred_at: timestamp(timeline.at(2)),
        }))
        .await
        .expect("scheduled")
        .into_inner()
        .session
        .expect("session");
    mentorship
        .complete_session(system.request(CompleteSessionRequest {
            request_id: format!("dashboard-complete-{tag}"),
            session_id: session.session_id.clone(),
            attendee_ids: ratings.iter().map(|(mentee, _)| (*mentee).into()).collect(),
            notes: String::new(),
            occurred_at: timestamp(timeline.at(4)),
        }))
        .await
        .expect("completed");
    for (mentee, rating) in ratings {
        mentorship
            .submit_feedback(system.request(SubmitFeedbackRequest {
                request_id: format!("dashboard-feedback-{mentee}"),
                session_id: session.session_id.clone(),
                mentee_id: (*mentee).into(),
                rating: *rating,
                comment: String::new(),
                occurred_at: timestamp(timeline.at(5)),
            }))
            .await
            .expect("feedback");
    }
}

/// A plan for `mentee` with one goal: `ANNA_GOAL_TARGET` of sales volume from today's start
/// for 30 days.
async fn goal(clients: &mut Clients<'_>, mentee: &str, timeline: &Timeline) -> String {
    let system = clients.system;
    let mentorship = clients.mentorship.clone();
    let (plan, _) = Clients::until_known(|| {
        let mut mentorship = mentorship.clone();
        let request = system.request(CreatePlanRequest {
            request_id: format!("plan-{mentee}"),
            mentee_id: mentee.into(),
        });
        async move { mentorship.create_plan(request).await }
    })
    .await;
    let plan_id = plan.plan.expect("plan").plan_id;
    let mut mentorship = clients.mentorship.clone();
    mentorship
        .set_goal(system.request(SetGoalRequest {
            request_id: format!("goal-{mentee}"),
            plan_id,
            metric: Metric::SalesVolume.into(),
            target: Some(Decimal {
                value: ANNA_GOAL_TARGET.into(),
            }),
            starts_at: timestamp(timeline.day_start),
            due_at: timestamp(timeline.day_start + chrono::Duration::days(30)),
            description: "First 500 in sales".into(),
        }))
        .await
        .expect("goal set")
        .into_inner()
        .goal
        .expect("goal")
        .goal_id
}

/// Waits until mentorship's GetPlan shows `progress` for the goal (the KPI service has
/// counted the goal and the orders).
async fn wait_goal_progress(
    clients: &mut Clients<'_>,
    mentee: &str,
    goal_id: &str,
    progress: &str,
) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let plan = clients
            .mentorship
            .get_plan(clients.system.request(GetPlanRequest {
                plan_id: String::new(),
                mentee_id: mentee.into(),
            }))
            .await
            .expect("plan")
            .into_inner()
            .plan
            .expect("plan");
        let shown = plan
            .goals
            .iter()
            .find(|goal| goal.goal_id == goal_id)
            .and_then(|goal| goal.progress.as_ref())
            .map(|progress| progress.value.clone());
        if shown.as_deref() == Some(progress) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "goal {goal_id} of {mentee}: progress {shown:?}, expected {progress}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A link for `partner` in `role`, once mentorship knows the partner.
async fn link(system: &System, partner: &str, role: DashboardRole) -> CreateDashboardLinkResponse {
    let mut links = DashboardServiceClient::new(system.channel(Service::Mentorship).await);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let request = system.request(CreateDashboardLinkRequest {
            partner_id: partner.into(),
            role: role.into(),
            valid_for: None,
            locale: "en".into(),
        });
        match links.create_dashboard_link(request).await {
            Ok(answer) => return answer.into_inner(),
            Err(status) if status.code() == Code::NotFound => {
                assert!(tokio::time::Instant::now() < deadline, "{status:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(status) => panic!("link for {partner}: {status:?}"),
        }
    }
}

/// The token of a page URL.
fn token_of(url: &str) -> &str {
    url.split_once("?token=").expect("a token").1
}

fn base(system: &System) -> String {
    system.endpoint(Service::Mentorship)
}

/// Status and body of `GET {base}{path}`, with the token as a bearer when given.
async fn get(system: &System, path: &str, bearer: Option<&str>) -> (u16, String) {
    let mut request = reqwest::Client::new().get(format!("{}{path}", base(system)));
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("an answer");
    let status = response.status().as_u16();
    (status, response.text().await.expect("a body"))
}

/// The value of the first `[data-live=key]` on the open page.
fn live<'v>(values: &'v Value, key: &str) -> &'v str {
    values["values"][key]["value"]
        .as_str()
        .unwrap_or_else(|| panic!("no number {key} on the page: {values}"))
}

#[tokio::test]
async fn dashboards_show_exact_live_numbers_only_to_whom_the_link_allows() {
    let mut system = System::start(false).await;
    let mut clients = Clients::connect(&system).await;
    let timeline = Timeline::today();
    let Seeded {
        group_id,
        anna_goal,
    } = seed(&mut clients, &timeline).await;
    let expected = expected();
    let date = timeline.date();

    let mentor = link(&system, "mentor", DashboardRole::Mentor).await;
    let leader = link(&system, "leader", DashboardRole::Leader).await;
    let anna = link(&system, "anna", DashboardRole::Partner).await;
    assert_links_are_refused_what_they_may_not_see(&system, &mentor, &leader, &anna).await;
    assert_link_requests_are_checked(&system).await;
    assert_expired_and_tampered_links_are_refused(&system, &mentor).await;
    assert_frame_ancestors_follow_the_tenant(&system, &mentor).await;
    assert_a_leader_sees_only_their_team(&system, &leader).await;
    assert_live_streams_are_bounded(&system).await;

    let mut browser = Browser::launch();
    let dated = |url: &str, lang: &str| format!("{url}&date={date}&lang={lang}");

    // The leader's page, exactly.
    let team = browser
        .open(&dated(&leader.team_url, "en"), 1280, "en-US")
        .await;
    assert_eq!(team["status"], 200, "{team}");
    let values = browser.values().await;
    assert_eq!(
        live(&values, "TEAM:leader|MONTH|SALES_VOLUME"),
        expected.team_volume
    );
    assert_eq!(
        live(&values, "TEAM:leader|WEEK|SALES_VOLUME"),
        expected.team_volume
    );
    assert_eq!(
        live(&values, "TEAM:leader|MONTH|ORDERS"),
        expected.team_orders
    );
    assert_eq!(
        live(&values, "TEAM:leader|MONTH|RECRUITS"),
        expected.team_recruits
    );
    assert_team_charts(&mut browser, &expected).await;
    assert_as_of(
        &values,
        &[
            "TEAM:leader|WEEK",
            "LEADERBOARD:SALES_VOLUME|MONTH",
            "LEADERBOARD:RECRUITS|MONTH",
            "SERIES:SALES_VOLUME|DAY",
            "SERIES:ACTIVE_DAYS|DAY",
        ],
    );
    assert_clean_console(&mut browser).await;
    assert_accessible(&mut browser, "the leader's page").await;
    // Live: an order of Denis's moves the team's cards, then its leaderboard, no reload.
    clients
        .ingest(vec![order("order-denis-live", "denis", 1_000, Utc::now())])
        .await;
    let denis = money(volume_of(&["denis"]) + 1_000);
    let moved = browser
        .run(json!({"cmd": "waitAttr",
                    "selector": "[data-leaderboard='SALES_VOLUME'] [data-partner='denis']",
                    "attr": "data-value", "equal": denis, "timeoutMs": WAIT.as_millis()}))
        .await;
    assert_eq!(moved["reloaded"], false, "{moved}");
    // Each card comes when the KPI service publishes it, not with the others.
    for window in ["WEEK", "MONTH"] {
        let card = browser
            .run(
                json!({"cmd": "waitValue", "key": format!("TEAM:leader|{window}|SALES_VOLUME"),
                        "equal": money(volume_of(&team_of("leader")) + 1_000),
                        "timeoutMs": WAIT.as_millis()}),
            )
            .await;
        assert_eq!(card["reloaded"], false, "{card}");
    }

    // The mentor's page, exactly.
    let page = browser
        .open(&dated(&mentor.mentor_url, "en"), 1280, "en-US")
        .await;
    assert_eq!(page["status"], 200, "{page}");
    let values = browser.values().await;
    let group_key = |window: &str, metric: &str| format!("GROUP:{group_id}|{window}|{metric}");
    assert_eq!(
        live(&values, &group_key("WEEK", "SALES_VOLUME")),
        expected.group_week_volume
    );
    assert_eq!(live(&values, &group_key("LIFETIME", "GROUP_SIZE")), "3");
    assert_eq!(
        live(&values, &group_key("LIFETIME", "FEEDBACK_AVG")),
        expected.feedback_avg
    );
    for (mentee, volume) in &expected.mentee_volumes {
        let key = format!("PARTNER:{mentee}|WEEK|SALES_VOLUME");
        let shown = live(&values, &key);
        if volume_of(&[mentee]) == 0 {
            assert_eq!(shown.parse::<f64>().ok(), Some(0.0), "{key}: {shown}");
        } else {
            assert_eq!(shown, volume, "{key}");
        }
    }
    let anna_goal_key = format!("GOAL:anna/{anna_goal}|PROGRESS");
    assert_eq!(live(&values, &anna_goal_key), money(volume_of(&["anna"])));
    // Clara did not attend the completed session; Boris and Clara have no plan; nobody has
    // gone quiet (everyone enrolled today).
    assert_eq!(
        attrs(&mut browser, "[data-need]", &["data-need"]).await,
        [
            ["clara:MISSED_SESSION"],
            ["boris:NO_PLAN"],
            ["clara:NO_PLAN"]
        ]
    );
    assert_eq!(
        attrs(
            &mut browser,
            "[data-session]",
            &["data-session", "data-invited", "data-attended"]
        )
        .await,
        [["COMPLETED", "3", "2"]]
    );
    assert_accessible(&mut browser, "the mentor's page").await;
    let mut feedback = attrs(
        &mut browser,
        "[data-feedback]",
        &["data-feedback", "data-rating"],
    )
    .await;
    feedback.sort();
    let rated: Vec<Vec<String>> = RATINGS
        .iter()
        .map(|(mentee, rating)| vec![(*mentee).to_owned(), rating.to_string()])
        .collect();
    assert_eq!(feedback, rated);
    assert_clean_console(&mut browser).await;

    // Live: an order while the page is open moves the group's and the mentee's numbers.
    let before = expected.group_week_volume.clone();
    clients
        .ingest(vec![order("order-live", "anna", 1_000, Utc::now())])
        .await;
    let moved = browser
        .run(
            json!({"cmd": "waitValue", "key": group_key("WEEK", "SALES_VOLUME"),
                     "notEqual": before, "timeoutMs": WAIT.as_millis()}),
        )
        .await;
    let live_volume = money(volume_of(&MENTEES) + 1_000);
    assert_eq!(moved["value"], live_volume.as_str(), "{moved}");
    assert_eq!(moved["reloaded"], false, "{moved}");
    eprintln!(
        "the open mentor page showed the order after {} ms (make bench measures this)",
        moved["elapsedMs"]
    );
    browser
        .run(
            json!({"cmd": "waitValue", "key": "PARTNER:anna|WEEK|SALES_VOLUME",
                     "equal": money(volume_of(&["anna"]) + 1_000), "timeoutMs": WAIT.as_millis()}),
        )
        .await;
    let goal_moved = browser
        .run(json!({"cmd": "waitValue", "key": anna_goal_key,
                     "equal": money(volume_of(&["anna"]) + 1_000), "timeoutMs": WAIT.as_millis()}))
        .await;
    assert_eq!(goal_moved["reloaded"], false, "{goal_moved}");
    let as_of = browser.values().await;
    assert_as_of(
        &as_of,
        &[&format!("GROUP:{group_id}|WEEK"), "PARTNER:anna|WEEK"],
    );

    // Anna's own page: her week and her goal, live numbers included.
    let own = browser
        .open(&dated(&anna.partner_url, "ru"), 390, "ru-RU")
        .await;
    assert_eq!(own["status"], 200, "{own}");
    let values = browser.values().await;
    let anna_now = money(volume_of(&["anna"]) + 1_000);
    assert_eq!(live(&values, "PARTNER:anna|WEEK|SALES_VOLUME"), anna_now);
    assert_eq!(live(&values, "PARTNER:anna|MONTH|SALES_VOLUME"), anna_now);
    assert_eq!(live(&values, &anna_goal_key), anna_now);
    assert_as_of(&values, &["PARTNER:anna|WEEK", "JOURNEY:anna"]);
    assert_clean_console(&mut browser).await;
    assert_accessible(&mut browser, "Anna's page on a phone, in Russian").await;
    let phone = browser
        .open(&dated(&mentor.mentor_url, "ru"), 390, "ru-RU")
        .await;
    assert_eq!(phone["status"], 200, "{phone}");
    assert_accessible(&mut browser, "the mentor's page on a phone, in Russian").await;

    // A refused page in the browser: 403 with nothing of the other team.
    let refused = browser
        .open(
            &format!(
                "{}/dashboard/team/yuri?token={}",
                base(&system),
                token_of(&mentor.mentor_url)
            ),
            1280,
            "en-US",
        )
        .await;
    assert_eq!(refused["status"], 403, "{refused}");
    let body = refused["body"].as_str().unwrap_or_default();
    assert!(
        OTHER_TEAM.iter().all(|marker| !body.contains(marker)),
        "{body}"
    );

    photograph(&mut browser, &anna, &mentor, &leader, &date).await;
    browser.close().await;
    system.stop();
}

async fn assert_team_charts(browser: &mut Browser, expected: &Expected) {
    let rows = browser
        .run(
            json!({"cmd": "attrs", "selector": "[data-leaderboard='SALES_VOLUME'] [data-partner]"}),
        )
        .await;
    let shown: Vec<(String, String)> = rows["elements"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|row| {
            (
                row["data-partner"].as_str().unwrap_or_default().to_owned(),
                row["data-value"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .filter(|(_, value)| value.parse::<f64>().is_ok_and(|value| value != 0.0))
        .collect();
    assert_eq!(shown, expected.leaderboard);
    let buckets = browser
        .run(json!({"cmd": "attrs", "selector": "[data-first-sale]"}))
        .await;
    let counts: BTreeMap<String, String> = buckets["elements"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|bucket| {
            (
                bucket["data-first-sale"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                bucket["data-count"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    // Everyone who sold did so on the day they enrolled.
    assert_eq!(
        counts.get("0–7"),
        Some(&expected.sold.to_string()),
        "{counts:?}"
    );
    assert_eq!(
        counts.get("none"),
        Some(&expected.not_sold.to_string()),
        "{counts:?}"
    );
}

/// A link's partner has at most 8 live streams open at once (a leaked link cannot hold a
/// thousand KPI watches); another partner's are counted apart.
async fn assert_live_streams_are_bounded(system: &System) {
    let boris = link(system, "boris", DashboardRole::Partner).await;
    let url = |link: &CreateDashboardLinkResponse, partner: &str| {
        format!(
            "{}/dashboard/api/live/partner/{partner}?token={}",
            base(system),
            token_of(&link.partner_url)
        )
    };
    let mut open = Vec::new();
    for _ in 0..8 {
        let stream = reqwest::get(url(&boris, "boris")).await.expect("a stream");
        assert_eq!(stream.status().as_u16(), 200);
        open.push(stream);
    }
    let refused = reqwest::get(url(&boris, "boris")).await.expect("an answer");
    assert_eq!(refused.status().as_u16(), 429);
    let body: Value = refused.json().await.expect("JSON");
    assert_eq!(
        body,
        json!({"code": "DASHBOARD_TOO_MANY_STREAMS",
               "message": "this link's partner has 8 live pages open already: close one to open another"})
    );
    let anna = link(system, "anna", DashboardRole::Partner).await;
    let other = reqwest::get(url(&anna, "anna")).await.expect("a stream");
    assert_eq!(other.status().as_u16(), 200);
}

/// Each of `keys` shows the time its numbers count up to.
fn assert_as_of(values: &Value, keys: &[&str]) {
    for key in keys {
        let shown = values["asOf"][key]["datetime"].as_str().unwrap_or_default();
        assert!(
            DateTime::parse_from_rfc3339(shown).is_ok(),
            "{key} shows its as_of: {values}"
        );
    }
}

/// The named attributes of every element matching `selector`, in document order.
async fn attrs(browser: &mut Browser, selector: &str, names: &[&str]) -> Vec<Vec<String>> {
    let found = browser
        .run(json!({"cmd": "attrs", "selector": selector}))
        .await;
    found["elements"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|element| {
            names
                .iter()
                .map(|name| element[*name].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .collect()
}

/// The leader may open Denis's mentor page (Denis is in the team) but sees nothing of Olga,
/// his mentee from Yuri's team: not her row, not her feedback, not the group's numbers
/// that count her.
async fn assert_a_leader_sees_only_their_team(
    system: &System,
    leader: &CreateDashboardLinkResponse,
) {
    let token = token_of(&leader.partner_url);
    let (status, body) = get(system, "/dashboard/api/mentor/denis", Some(token)).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        OTHER_TEAM.iter().all(|marker| !body.contains(marker)),
        "{body}"
    );
    let page: Value = serde_json::from_str(&body).expect("JSON");
    let group = &page["groups"][0];
    assert_eq!(
        (
            &group["hiddenMentees"],
            &group["mentees"],
            &group["week"],
            &group["lifetime"]
        ),
        (&json!(1), &json!([]), &Value::Null, &Value::Null),
        "{page}"
    );
    assert_eq!(page["groups"].as_array().map(Vec::len), Some(1), "{page}");
    // Denis's session is his own; who of Olga's team was invited or came is not.
    let sessions: Vec<(&Value, &Value, &Value)> = page["sessions"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|session| (&session["state"], &session["invited"], &session["attended"]))
        .collect();
    assert_eq!(
        sessions,
        [(&json!("completed"), &json!(0), &json!(0))],
        "{page}"
    );
    assert_eq!(page["feedback"], json!([]), "{page}");
}

/// axe-core finds nothing against WCAG 2.1 A and AA on the open page.
async fn assert_accessible(browser: &mut Browser, page: &str) {
    let checked = browser.run(json!({"cmd": "axe"})).await;
    assert_eq!(checked["violations"], json!([]), "{page}: {checked:#}");
}

async fn assert_clean_console(browser: &mut Browser) {
    let console = browser.run(json!({"cmd": "console"})).await;
    let errors: Vec<&Value> = console["messages"]
        .as_array()
        .expect("a list")
        .iter()
        .filter(|message| ["error", "pageerror"].contains(&message["type"].as_str().unwrap_or("")))
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
}

async fn assert_links_are_refused_what_they_may_not_see(
    system: &System,
    mentor: &CreateDashboardLinkResponse,
    leader: &CreateDashboardLinkResponse,
    anna: &CreateDashboardLinkResponse,
) {
    let cases: [(&CreateDashboardLinkResponse, &str, u16); 19] = [
        (mentor, "team/yuri", 403),
        (mentor, "mentor/yuri", 403),
        (mentor, "partner/zoya", 403),
        (mentor, "partner/yuri", 403),
        (mentor, "team/leader", 403),
        (mentor, "team/ghost", 403),
        (mentor, "partner/anna", 200),
        (mentor, "mentor/mentor", 200),
        (leader, "team/yuri", 403),
        (leader, "partner/zoya", 403),
        (leader, "mentor/yuri", 403),
        (leader, "team/mentor", 200),
        (leader, "mentor/mentor", 200),
        (leader, "partner/clara", 200),
        (leader, "partner/olga", 403),
        (leader, "mentor/denis", 200),
        (anna, "partner/boris", 403),
        (anna, "mentor/anna", 403),
        (anna, "partner/anna", 200),
    ];
    for (link, path, status) in cases {
        let token = token_of(&link.partner_url);
        let page = get(system, &format!("/dashboard/{path}?token={token}"), None).await;
        let data = get(system, &format!("/dashboard/api/{path}"), Some(token)).await;
        assert_eq!(
            (page.0, data.0),
            (status, status),
            "{path}: {page:?} {data:?}"
        );
        if status == 403 {
            let refusal: Value = serde_json::from_str(&data.1).expect("JSON");
            assert_eq!(refusal["code"], "DASHBOARD_FORBIDDEN", "{path}");
            let live = get(
                system,
                &format!("/dashboard/api/live/{path}?token={token}"),
                None,
            )
            .await;
            assert_eq!(live.0, 403, "{path}");
            for body in [&page.1, &data.1, &live.1] {
                assert!(
                    OTHER_TEAM.iter().all(|marker| !body.contains(marker)),
                    "{path}: {body}"
                );
            }
        }
    }
}

async fn assert_link_requests_are_checked(system: &System) {
    let mut links = DashboardServiceClient::new(system.channel(Service::Mentorship).await);
    let refused = |partner: &str, role: DashboardRole, seconds: i64, locale: &str| {
        system.request(CreateDashboardLinkRequest {
            partner_id: partner.into(),
            role: role.into(),
            valid_for: Some(prost_types::Duration { seconds, nanos: 0 }),
            locale: locale.into(),
        })
    };
    for (request, code, message) in [
        (
            refused("ghost", DashboardRole::Partner, 600, ""),
            Code::NotFound,
            "no enrolled partner `ghost`",
        ),
        (
            refused("anna", DashboardRole::Unspecified, 600, ""),
            Code::InvalidArgument,
            "role: one of DASHBOARD_ROLE_PARTNER, DASHBOARD_ROLE_MENTOR, DASHBOARD_ROLE_LEADER",
        ),
        (
            refused("anna", DashboardRole::Partner, 24 * 3600 + 1, ""),
            Code::InvalidArgument,
            "valid_for: between 60s and 86400s",
        ),
        (
            refused("anna", DashboardRole::Partner, 600, "de"),
            Code::InvalidArgument,
            "locale: `de` is not offered: `ru`, `en`, or empty for the partner's own",
        ),
    ] {
        let status = links
            .create_dashboard_link(request)
            .await
            .expect_err("refused");
        assert_eq!((status.code(), status.message()), (code, message));
    }
}

async fn assert_expired_and_tampered_links_are_refused(
    system: &System,
    mentor: &CreateDashboardLinkResponse,
) {
    let expired = mentor_link(system, Role::Mentor, "", -1);
    let genuine = token_of(&mentor.mentor_url);
    let (_, signature) = genuine.rsplit_once('.').expect("present");
    // The same claims raised to a leader's, under the genuine signature.
    let raised = mentor_link(system, Role::Leader, "en", 3600);
    let (raised_claims, _) = raised.rsplit_once('.').expect("present");
    let tampered = format!("{raised_claims}.{signature}");
    for (token, code) in [
        (expired.as_str(), "DASHBOARD_LINK_EXPIRED"),
        (tampered.as_str(), "DASHBOARD_LINK_INVALID"),
        ("d1.garbage.x", "DASHBOARD_LINK_INVALID"),
        ("", "DASHBOARD_LINK_MISSING"),
    ] {
        let page = get(
            system,
            &format!("/dashboard/team/mentor?token={token}"),
            None,
        )
        .await;
        let data = get(system, "/dashboard/api/mentor/mentor", Some(token)).await;
        let live = get(
            system,
            &format!("/dashboard/api/live/mentor/mentor?token={token}"),
            None,
        )
        .await;
        assert_eq!(
            (page.0, data.0, live.0),
            (401, 401, 401),
            "{code}: {page:?} {data:?} {live:?}"
        );
        for answer in [&data.1, &live.1] {
            let refusal: Value = serde_json::from_str(answer).expect("JSON");
            assert_eq!(refusal["code"], code);
        }
        assert!(page.1.contains(code), "{}", page.1);
    }
}

/// A link for the mentor signed with the system's own key, in `role` and `locale`, expiring
/// `seconds` from now (in the past when negative).
fn mentor_link(system: &System, role: Role, locale: &str, seconds: i64) -> String {
    let signer = Signer::new(system.config.actions.signing_key.expose_secret().as_bytes())
        .expect("the system's key");
    signer.issue(&LinkClaims {
        tenant_id: system.tenant_id.clone(),
        partner_id: "mentor".into(),
        role,
        locale: locale.into(),
        expires_at: Utc::now().timestamp() + seconds,
    })
}

async fn assert_frame_ancestors_follow_the_tenant(
    system: &System,
    mentor: &CreateDashboardLinkResponse,
) {
    let policy = || async {
        let response = reqwest::get(&mentor.mentor_url).await.expect("page");
        assert_eq!(response.status().as_u16(), 200);
        response.headers()["content-security-policy"]
            .to_str()
            .expect("present")
            .to_owned()
    };
    assert!(policy().await.ends_with("frame-ancestors 'none'"));
    system.cli_ok(&[
        "admin",
        "set-frame-ancestors",
        "--tenant",
        "acme",
        "https://office.acme.example",
    ]);
    assert!(
        policy()
            .await
            .ends_with("frame-ancestors https://office.acme.example")
    );
    // A refusal of a genuine link (expired, or for a page it does not open) shows inside the
    // tenant's frame, in the link's language; anything else may not be framed.
    let expired = mentor_link(system, Role::Mentor, "ru", -1);
    let genuine = token_of(&mentor.mentor_url);
    for (path, token, status, ancestors, lang) in [
        (
            "mentor/mentor",
            expired.as_str(),
            401,
            "https://office.acme.example",
            "ru",
        ),
        (
            "team/yuri",
            genuine,
            403,
            "https://office.acme.example",
            "en",
        ),
        ("mentor/mentor", "d1.garbage.x", 401, "'none'", "en"),
    ] {
        let response = reqwest::get(format!("{}/dashboard/{path}?token={token}", base(system)))
            .await
            .expect("an answer");
        assert_eq!(response.status().as_u16(), status, "{path}");
        let policy = response.headers()["content-security-policy"]
            .to_str()
            .expect("text")
            .to_owned();
        assert!(
            policy.ends_with(&format!("frame-ancestors {ancestors}")),
            "{path}: {policy}"
        );
        let page = response.text().await.expect("a page");
        assert!(page.contains(&format!("<html lang=\"{lang}\">")), "{page}");
    }
    let refused = system.cli(&[
        "admin",
        "set-frame-ancestors",
        "--tenant",
        "acme",
        "http://office.acme.example/path",
    ]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains(
            "`http://office.acme.example/path` is not an origin: expected https://host or \
             https://host:port (http:// only for localhost), without a path"
        ),
        "{refused:?}"
    );
}

/// The three pages in both languages, and the mentor's on a phone, into
/// `$MENTORSTREAM_SCREENSHOTS` (else the test's scratch directory).
async fn photograph(
    browser: &mut Browser,
    anna: &CreateDashboardLinkResponse,
    mentor: &CreateDashboardLinkResponse,
    leader: &CreateDashboardLinkResponse,
    date: &str,
) {
    let dir = std::env::var_os("MENTORSTREAM_SCREENSHOTS").map_or_else(
        || PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboards"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&dir).expect("screenshot directory");
    let pages = [
        ("partner", &anna.partner_url),
        ("mentor", &mentor.mentor_url),
        ("leader", &leader.team_url),
    ];
    for (lang, locale) in [("en", "en-US"), ("ru", "ru-RU")] {
        for (name, url) in pages {
            let url = format!("{url}&date={date}&lang={lang}");
            let opened = browser.open(&url, 1280, locale).await;
            assert_eq!(opened["status"], 200, "{opened}");
            browser
                .screenshot(&dir.join(format!("{name}-{lang}.png")))
                .await;
        }
    }
    let url = format!("{}&date={date}&lang=ru", mentor.mentor_url);
    browser.open(&url, 390, "ru-RU").await;
    browser.screenshot(&dir.join("mentor-phone-ru.png")).await;
    eprintln!("screenshots in {}", dir.display());
}

/// Thirty orders, one after the other, each reach the open mentor page with the exact new
/// number and no reload. It also times them (from the Ingest call: accepted, in GetScorecard,
/// on the page) and prints the times against the 2 s target of issue 18 — printed, never
/// asserted: `make bench-dashboard` runs it for the numbers (docs/benchmarks.md).
#[tokio::test]
async fn thirty_orders_in_a_row_reach_the_open_page_without_a_reload() {
    const ORDERS_SENT: usize = 30;
    const TARGET: Duration = Duration::from_secs(2);
    let mut system = System::start(false).await;
    let mut clients = Clients::connect(&system).await;
    let timeline = Timeline::today();
    let group_id = seed(&mut clients, &timeline).await.group_id;
    let mentor = link(&system, "mentor", DashboardRole::Mentor).await;
    let mut browser = Browser::launch();
    let url = format!("{}&date={}", mentor.mentor_url, timeline.date());
    assert_eq!(browser.open(&url, 1280, "en-US").await["status"], 200);
    let key = format!("GROUP:{group_id}|WEEK|SALES_VOLUME");
    let mut volume = volume_of(&MENTEES);
    let (mut accepted, mut in_api, mut on_page) = (Vec::new(), Vec::new(), Vec::new());
    for n in 0..ORDERS_SENT {
        volume += 100;
        let sent = std::time::Instant::now();
        clients
            .ingest(vec![order(&format!("bench-{n}"), "anna", 100, Utc::now())])
            .await;
        accepted.push(sent.elapsed());
        // Where the time goes: accepted, visible in GetScorecard, then on the page.
        while group_week_volume(&mut clients, &group_id, &timeline).await != money(volume) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        in_api.push(sent.elapsed());
        let shown = browser
            .run(
                json!({"cmd": "waitValue", "key": key, "equal": money(volume),
                         "timeoutMs": WAIT.as_millis()}),
            )
            .await;
        on_page.push(sent.elapsed());
        assert_eq!(shown["reloaded"], false, "{shown}");
    }
    let worst = on_page.iter().max().copied().unwrap_or_default();
    eprintln!(
        "dashboard live latency over {ORDERS_SENT} orders, from the Ingest call: ACCEPTED {}; in \
         GetScorecard {}; on the open page {} — target ≤ {} ms for every order: {}",
        quantiles(&mut accepted),
        quantiles(&mut in_api),
        quantiles(&mut on_page),
        TARGET.as_millis(),
        if worst <= TARGET { "met" } else { "MISSED" }
    );
    browser.close().await;
    system.stop();
}

/// `p50 … ms, p95 … ms, max … ms` of `samples`.
fn quantiles(samples: &mut [Duration]) -> String {
    samples.sort();
    let at = |quantile: f64| {
        let last = samples.len().saturating_sub(1);
        let index = (last as f64 * quantile).round() as usize;
        samples.get(index).map_or(0, Duration::as_millis)
    };
    format!(
        "p50 {} ms, p95 {} ms, max {} ms",
        at(0.5),
        at(0.95),
        at(1.0)
    )
}

/// The group's sales volume this week, as GetScorecard says.
async fn group_week_volume(
    clients: &mut Clients<'_>,
    group_id: &str,
    timeline: &Timeline,
) -> String {
    use mentorstream_proto::kpi::v1 as kpi;
    let date = timeline.day_start.with_timezone(&moscow()).date_naive();
    let answer = clients
        .kpi
        .get_scorecard(clients.system.request(kpi::GetScorecardRequest {
            subject: Some(kpi::Subject {
                kind: kpi::SubjectKind::Group.into(),
                id: group_id.into(),
                mentor_id: String::new(),
            }),
            window: Some(kpi::Window {
                kind: kpi::WindowKind::Week.into(),
                anchor: Some(date.into()),
            }),
        }))
        .await
        .expect("scorecard")
        .into_inner();
    answer
        .values
        .iter()
        .find(|value| value.metric() == kpi::Metric::SalesVolume)
        .and_then(|value| match &value.value {
            Some(kpi::metric_value::Value::Decimal(decimal)) => Some(decimal.value.clone()),
            _ => None,
        })
        .unwrap_or_default()
}
