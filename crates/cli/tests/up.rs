//! The `mentorstream` command as a person runs it: admin commands, then `up` serving the four
//! services, then SIGTERM ending it through the one shutdown path.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use mentorstream_config::Config;
use mentorstream_proto::activity::v1::{ActivityEvent, ActivityPing, PingKind, activity_event};
use mentorstream_proto::ingest::v1::EventStatus;
use mentorstream_proto::ingest::v1::IngestRequest;
use mentorstream_proto::ingest::v1::ingest_service_client::IngestServiceClient;
use mentorstream_testkit::fresh_database;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const BIN: &str = env!("CARGO_BIN_EXE_mentorstream");

/// What one run of `mentorstream` gets: its settings, and where its services listen (on an
/// address of the test's own, so the ports are free when it binds them).
struct Env {
    _host: mentorstream_testkit::Host,
    vars: Vec<(String, String)>,
    grpc: Vec<(&'static str, SocketAddr)>,
    admin: Vec<SocketAddr>,
}

async fn isolated_env() -> Env {
    let base = Config::load(None).expect("defaults");
    let mut vars = vec![
        (
            "MENTORSTREAM__POSTGRES__URL".to_owned(),
            fresh_database(&base, "cli").await,
        ),
        (
            "MENTORSTREAM__SHUTDOWN__GRACE_PERIOD".to_owned(),
            "10s".to_owned(),
        ),
        (
            "MENTORSTREAM__KAFKA__TOPICS__ACTIVITY".to_owned(),
            mentorstream_testkit::unique("t.activity"),
        ),
        (
            "MENTORSTREAM__REDIS__KEY_PREFIX".to_owned(),
            mentorstream_testkit::unique("ms-test"),
        ),
    ];
    let host = mentorstream_testkit::Host::reserve();
    let mut grpc = Vec::new();
    let mut admin = Vec::new();
    for (offset, (section, service)) in [
        ("INGEST", "mentorstream.ingest.v1.IngestService"),
        ("MENTORSHIP", "mentorstream.mentorship.v1.MentorshipService"),
        ("KPI", "mentorstream.kpi.v1.KpiService"),
        (
            "NOTIFIER",
            "mentorstream.notification.v1.NotificationService",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let offset = u16::try_from(offset).expect("four");
        let grpc_addr = host.addr(50051 + offset);
        let admin_addr = host.addr(9101 + offset);
        vars.push((
            format!("MENTORSTREAM__{section}__GRPC_LISTEN"),
            grpc_addr.to_string(),
        ));
        vars.push((
            format!("MENTORSTREAM__{section}__ADMIN_LISTEN"),
            admin_addr.to_string(),
        ));
        grpc.push((service, grpc_addr));
        admin.push(admin_addr);
    }
    Env {
        _host: host,
        vars,
        grpc,
        admin,
    }
}

fn mentorstream(env: &Env, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .envs(env.vars.iter().map(|(k, v)| (k, v)))
        .env("RUST_LOG", "warn")
        .output()
        .expect("run mentorstream")
}

/// Runs an admin command that must succeed and answers JSON.
fn admin_json(env: &Env, args: &[&str]) -> serde_json::Value {
    let output = mentorstream(env, &[&["admin"], args, &["--json"]].concat());
    assert!(output.status.success(), "{output:?}");
    serde_json::from_slice(&output.stdout).expect("json")
}

async fn connect(addr: SocketAddr) -> Channel {
    for _ in 0..200 {
        if let Ok(channel) = Channel::from_shared(format!("http://{addr}"))
            .expect("uri")
            .connect()
            .await
        {
            return channel;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing listens on {addr}");
}

#[tokio::test]
async fn admin_commands_then_up_serves_every_service_until_sigterm() {
    let env = isolated_env().await;
    let migrated = mentorstream(&env, &["admin", "migrate"]);
    assert!(migrated.status.success(), "{migrated:?}");
    assert_eq!(
        String::from_utf8_lossy(&migrated.stdout),
        "control database is up to date\nmentorship database is up to date\n\
         notifier database is up to date\n"
    );
    let activity = &env
        .vars
        .iter()
        .find(|(name, _)| name == "MENTORSTREAM__KAFKA__TOPICS__ACTIVITY")
        .expect("an activity topic of the test's own")
        .1;
    let topics = mentorstream(&env, &["admin", "create-topics"]);
    assert!(topics.status.success(), "{topics:?}");
    assert_eq!(
        String::from_utf8_lossy(&topics.stdout).lines().next(),
        Some(
            format!("{activity} (6 partitions, keeps every record) and {activity}.dlq are present")
                .as_str()
        )
    );

    let bad_zone = mentorstream(
        &env,
        &[
            "admin",
            "create-tenant",
            "--name",
            "acme",
            "--timezone",
            "Mars/Olympus",
        ],
    );
    assert!(!bad_zone.status.success());
    assert_eq!(
        String::from_utf8_lossy(&bad_zone.stderr).trim(),
        "error: unknown time zone `Mars/Olympus`: expected an IANA name such as Europe/Moscow"
    );

    let tenant = admin_json(
        &env,
        &[
            "create-tenant",
            "--name",
            "acme",
            "--timezone",
            "Europe/Moscow",
        ],
    );
    assert_eq!(tenant["name"], "acme");
    assert_eq!(tenant["time_zone"], "Europe/Moscow");

    let key = admin_json(
        &env,
        &["create-key", "--tenant", "acme", "--scopes", "ingest,read"],
    );
    assert_eq!(key["tenant_id"], tenant["tenant_id"]);
    assert_eq!(key["scopes"], serde_json::json!(["ingest", "read"]));
    let api_key = key["api_key"].as_str().expect("api key").to_owned();

    let bad_scope = mentorstream(
        &env,
        &[
            "admin",
            "create-key",
            "--tenant",
            "acme",
            "--scopes",
            "ingest,rede",
        ],
    );
    assert!(!bad_scope.status.success());
    assert!(
        String::from_utf8_lossy(&bad_scope.stderr)
            .contains("unknown scope `rede`: expected ingest, read, write or admin"),
        "{bad_scope:?}"
    );

    let bad_channels = mentorstream(
        &env,
        &[
            "admin",
            "set-channels",
            "--tenant",
            "acme",
            "--chatbot-url",
            "https://bot.acme.example/hook",
            "--chatbot-secret",
            "short",
        ],
    );
    assert!(!bad_channels.status.success());
    assert_eq!(
        String::from_utf8_lossy(&bad_channels.stderr).trim(),
        "error: a chat-bot gateway needs a secret of at least 16 characters to sign webhooks"
    );
    let channels = mentorstream(
        &env,
        &[
            "admin",
            "set-channels",
            "--tenant",
            "acme",
            "--chatbot-url",
            "https://bot.acme.example/hook",
            "--chatbot-secret",
            "0123456789abcdef",
            "--daily-cap",
            "5",
        ],
    );
    assert!(channels.status.success(), "{channels:?}");
    assert_eq!(
        String::from_utf8_lossy(&channels.stdout).trim(),
        "channels of acme: chat-bot https://bot.acme.example/hook, e-mail off (from off), \
         daily cap 5"
    );

    let mut up = Command::new(BIN)
        .arg("up")
        .envs(env.vars.iter().map(|(k, v)| (k, v)))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn up");

    for (service, addr) in &env.grpc {
        let mut health = HealthClient::new(connect(*addr).await);
        let status = health
            .check(HealthCheckRequest {
                service: (*service).to_owned(),
            })
            .await
            .expect("health answers")
            .into_inner();
        assert_eq!(status.status(), ServingStatus::Serving, "{service}");
    }
    for addr in &env.admin {
        let healthz = reqwest_get(&format!("http://{addr}/healthz")).await;
        assert_eq!(healthz, (200, "ok".to_owned()));
        let (status, _) = reqwest_get(&format!("http://{addr}/metrics")).await;
        assert_eq!(status, 200);
    }

    // Authenticated and served end to end: an event is accepted.
    let mut ingest = IngestServiceClient::new(connect(env.grpc[0].1).await);
    let event = ActivityEvent {
        source: "app".into(),
        source_event_id: "up-1".into(),
        occurred_at: Some(std::time::SystemTime::now().into()),
        partner_id: "p-1".into(),
        payload: Some(activity_event::Payload::ActivityPing(ActivityPing {
            kind: PingKind::App.into(),
        })),
        ..ActivityEvent::default()
    };
    let request = mentorstream_testkit::authorized(
        &api_key,
        IngestRequest {
            events: vec![event],
        },
    );
    let answer = ingest.ingest(request).await.expect("ingested");
    let statuses: Vec<i32> = answer
        .into_inner()
        .results
        .iter()
        .map(|result| result.status)
        .collect();
    assert_eq!(statuses, [i32::from(EventStatus::Accepted)]);
    let unauthenticated = ingest
        .ingest(IngestRequest::default())
        .await
        .expect_err("no key");
    assert_eq!(unauthenticated.code(), Code::Unauthenticated);

    let killed = Command::new("kill")
        .args(["-TERM", &up.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let mut exited = None;
    for _ in 0..300 {
        if let Some(status) = up.try_wait().expect("wait") {
            exited = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = exited.unwrap_or_else(|| {
        let _ = up.kill();
        panic!("mentorstream up did not stop after SIGTERM");
    });
    assert!(status.success(), "graceful exit: {status}");
}

async fn reqwest_get(url: &str) -> (u16, String) {
    let response = reqwest::get(url).await.expect("http get");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}
