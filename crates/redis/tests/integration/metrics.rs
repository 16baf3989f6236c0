//! Every call through a [`Connection`] is counted and timed on `/metrics`, by kind; a call
//! Redis does not answer counts as an error. Each test runs in a process of its own (nextest),
//! so the process-wide counters start at zero.

use mentorstream_config::Config;
use mentorstream_redis::{Value, cmd, connect};

use crate::local_redis;

/// The value of the sample `name{kind="<kind>"}` in the exposition, if any.
fn sample(kind: &str, name: &str) -> Option<f64> {
    let text = mentorstream_telemetry::init_for_tests().render_metrics();
    let prefix = format!("{name}{{kind=\"{kind}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map(|value| value.parse().expect("a number"))
}

#[tokio::test]
async fn commands_and_pipelines_are_counted_by_kind() {
    mentorstream_telemetry::init_for_tests();
    let mut connection = local_redis();
    for _ in 0..3 {
        let pong: String = cmd("PING")
            .query_async(&mut connection)
            .await
            .expect("PING");
        assert_eq!(pong, "PONG");
    }
    let answers = connection
        .each(vec![cmd("PING"), cmd("ECHO").arg("x").clone()])
        .await
        .expect("pipeline");
    assert_eq!(answers.len(), 2);
    assert_eq!(
        sample("command", "mentorstream_redis_call_seconds_count"),
        Some(3.0)
    );
    assert_eq!(
        sample("pipeline", "mentorstream_redis_call_seconds_count"),
        Some(1.0)
    );
    // An error reply is an answer: not an error of the connection.
    let refused = cmd("NO-SUCH-COMMAND")
        .query_async::<Value>(&mut connection)
        .await;
    assert!(refused.is_err());
    assert_eq!(
        sample("command", "mentorstream_redis_call_seconds_count"),
        Some(4.0)
    );
    assert_eq!(
        sample("command", "mentorstream_redis_unanswered_total"),
        None
    );
}

/// A Redis that accepts connections and never answers: the call fails within the response
/// timeout and counts as an error.
#[tokio::test]
async fn a_call_redis_does_not_answer_is_an_error() {
    mentorstream_telemetry::init_for_tests();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listener");
    let address = listener.local_addr().expect("address");
    // Accepts and holds every connection, reading nothing and answering nothing.
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let mut config = Config::load(None).expect("defaults");
    config.redis.url = format!("redis://{address}").into();
    let mut connection = connect(&config.redis).expect("connection");
    let answer = cmd("PING").query_async::<Value>(&mut connection).await;
    let error = answer.expect_err("no answer");
    eprintln!("{error}");
    assert_eq!(
        sample("command", "mentorstream_redis_unanswered_total"),
        Some(1.0)
    );
    assert_eq!(
        sample("command", "mentorstream_redis_call_seconds_count"),
        Some(1.0)
    );
    silent.abort();
}
