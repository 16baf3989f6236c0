//! A lease is held by one holder at a time, for its time to live, and can be taken again once
//! it is gone.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mentorstream_redis::cmd;

use crate::local_redis;

#[tokio::test]
async fn a_lease_has_one_holder_until_it_is_gone() {
    let connection = local_redis();
    let mut commands = connection.clone();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos();
    let key = format!("mentorstream-test:lease:{}:{nanos}", std::process::id());
    let ttl = Duration::from_secs(60);
    let take = |holder: &'static str| {
        let connection = connection.clone();
        let key = key.clone();
        async move {
            connection
                .take_lease(&key, holder, ttl)
                .await
                .expect("an answer")
        }
    };
    assert!(take("replica-a").await);
    assert!(!take("replica-b").await);
    assert!(
        !take("replica-a").await,
        "not even the holder takes it twice"
    );
    let holder: String = cmd("GET")
        .arg(&key)
        .query_async(&mut commands)
        .await
        .expect("GET");
    assert_eq!(holder, "replica-a");
    let left: i64 = cmd("PTTL")
        .arg(&key)
        .query_async(&mut commands)
        .await
        .expect("PTTL");
    assert!(left > 0 && left <= 60_000, "{left} ms left");
    // Only its holder gives it back; then the next asker takes it.
    let release = |holder: &'static str| {
        let connection = connection.clone();
        let key = key.clone();
        async move {
            connection
                .release_lease(&key, holder)
                .await
                .expect("an answer")
        }
    };
    assert!(!release("replica-b").await);
    assert!(!take("replica-b").await);
    assert!(release("replica-a").await);
    assert!(!release("replica-a").await, "given back once");
    assert!(take("replica-b").await);
    // Gone (expired, or the holder's Redis lost it): the next asker takes it.
    let _: i64 = cmd("DEL")
        .arg(&key)
        .query_async(&mut commands)
        .await
        .expect("DEL");
    assert!(take("replica-c").await);
    let _: i64 = cmd("DEL")
        .arg(&key)
        .query_async(&mut commands)
        .await
        .expect("DEL");
}
