//! Verification of a delivery per Standard Webhooks (<https://www.standardwebhooks.com>): the
//! signature is `v1,<base64 HMAC-SHA256>` of `{webhook-id}.{webhook-timestamp}.{body}` keyed
//! by the secret's bytes (`whsec_<base64>`); `webhook-signature` may carry several,
//! space-separated, so a sender can sign with an old and a new secret while it rotates.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac as _};
use sha2::Sha256;

/// How far `webhook-timestamp` may be from now, either way: older deliveries could be replays
/// whose id has been forgotten, newer ones come from a clock that is wrong.
pub const TOLERANCE_SECS: i64 = 5 * 60;

/// The three Standard Webhooks headers of a delivery.
#[derive(Debug, Clone, Copy)]
pub struct Headers<'a> {
    pub id: &'a str,
    pub timestamp: &'a str,
    pub signature: &'a str,
}

/// Why a delivery is not believed. Nothing of it is taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unverified {
    #[error("webhook-timestamp must be whole seconds since 1970-01-01T00:00:00Z, got `{0}`")]
    MalformedTimestamp(String),
    #[error(
        "webhook-timestamp {timestamp} is {skew} s from the server's time; deliveries are \
         taken within ±{TOLERANCE_SECS} s (a replay, or the sender's clock is wrong)"
    )]
    OutsideWindow { timestamp: i64, skew: i64 },
    #[error(
        "no v1 signature in webhook-signature matches a current secret of this source (signed \
         content: `{{webhook-id}}.{{webhook-timestamp}}.{{body}}`, HMAC-SHA256, base64)"
    )]
    BadSignature,
}

/// Checks `headers` and `body` against `secrets` (`whsec_…`) at `now`.
pub fn verify<'s>(
    headers: Headers<'_>,
    body: &[u8],
    secrets: impl IntoIterator<Item = &'s str>,
    now: DateTime<Utc>,
) -> Result<(), Unverified> {
    let timestamp: i64 = headers
        .timestamp
        .parse()
        .map_err(|_| Unverified::MalformedTimestamp(headers.timestamp.to_owned()))?;
    let skew = timestamp.saturating_sub(now.timestamp());
    if skew.unsigned_abs() > TOLERANCE_SECS.unsigned_abs() {
        return Err(Unverified::OutsideWindow { timestamp, skew });
    }
    let signatures: Vec<Vec<u8>> = headers
        .signature
        .split(' ')
        .filter_map(|signature| signature.strip_prefix("v1,"))
        .filter_map(|signature| BASE64.decode(signature).ok())
        .collect();
    for secret in secrets {
        let Some(mac) = keyed(secret) else { continue };
        let mut mac = mac;
        mac.update(headers.id.as_bytes());
        mac.update(b".");
        mac.update(headers.timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        // verify_slice compares in constant time.
        if signatures
            .iter()
            .any(|signature| mac.clone().verify_slice(signature).is_ok())
        {
            return Ok(());
        }
    }
    Err(Unverified::BadSignature)
}

/// The signature header value for a delivery: what a sender computes (tests, tools).
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let mut mac = keyed(secret)?;
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    Some(format!("v1,{}", BASE64.encode(mac.finalize().into_bytes())))
}

fn keyed(secret: &str) -> Option<Hmac<Sha256>> {
    let key = BASE64.decode(secret.strip_prefix("whsec_")?).ok()?;
    Hmac::<Sha256>::new_from_slice(&key).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example of the Standard Webhooks specification.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: &str = "1614265330";
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).expect("a valid time")
    }

    fn headers(signature: &str) -> Headers<'_> {
        Headers {
            id: ID,
            timestamp: TIMESTAMP,
            signature,
        }
    }

    #[test]
    fn the_specification_example_verifies_and_signs_the_same() {
        assert_eq!(
            verify(headers(SIGNATURE), BODY, [SECRET], at(1_614_265_330)),
            Ok(())
        );
        assert_eq!(
            sign(SECRET, ID, 1_614_265_330, BODY).as_deref(),
            Some(SIGNATURE)
        );
    }

    #[test]
    fn any_of_several_signatures_and_any_current_secret_verifies() {
        let other = "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        let several = format!("v1,bm90IGl0 v2,ignored {SIGNATURE}");
        assert_eq!(
            verify(headers(&several), BODY, [other, SECRET], at(1_614_265_330)),
            Ok(())
        );
        assert_eq!(
            verify(headers(SIGNATURE), BODY, [other], at(1_614_265_330)),
            Err(Unverified::BadSignature)
        );
    }

    #[test]
    fn a_changed_body_id_or_timestamp_breaks_the_signature() {
        let now = at(1_614_265_330);
        assert_eq!(
            verify(
                headers(SIGNATURE),
                br#"{"test": 2432232315}"#,
                [SECRET],
                now
            ),
            Err(Unverified::BadSignature)
        );
        let other_id = Headers {
            id: "msg_other",
            ..headers(SIGNATURE)
        };
        assert_eq!(
            verify(other_id, BODY, [SECRET], now),
            Err(Unverified::BadSignature)
        );
        let other_time = Headers {
            timestamp: "1614265331",
            ..headers(SIGNATURE)
        };
        assert_eq!(
            verify(other_time, BODY, [SECRET], now),
            Err(Unverified::BadSignature)
        );
    }

    #[test]
    fn the_window_is_five_minutes_either_way() {
        for edge in [1_614_265_330 - 300, 1_614_265_330 + 300] {
            assert_eq!(verify(headers(SIGNATURE), BODY, [SECRET], at(edge)), Ok(()));
        }
        assert_eq!(
            verify(headers(SIGNATURE), BODY, [SECRET], at(1_614_265_330 + 301)),
            Err(Unverified::OutsideWindow {
                timestamp: 1_614_265_330,
                skew: -301
            })
        );
        assert_eq!(
            verify(headers(SIGNATURE), BODY, [SECRET], at(1_614_265_330 - 301))
                .map_err(|refused| refused.to_string()),
            Err(
                "webhook-timestamp 1614265330 is 301 s from the server's time; deliveries are \
                 taken within ±300 s (a replay, or the sender's clock is wrong)"
                    .to_owned()
            )
        );
    }

    #[test]
    fn an_extreme_timestamp_is_outside_the_window_not_an_overflow() {
        let extreme = Headers {
            timestamp: "-9223372036854775808",
            ..headers(SIGNATURE)
        };
        assert!(matches!(
            verify(extreme, BODY, [SECRET], at(1_614_265_330)),
            Err(Unverified::OutsideWindow { .. })
        ));
    }

    #[test]
    fn a_timestamp_that_is_not_whole_seconds_is_refused_by_name() {
        let malformed = Headers {
            timestamp: "2021-02-25T15:02:10Z",
            ..headers(SIGNATURE)
        };
        assert_eq!(
            verify(malformed, BODY, [SECRET], at(1_614_265_330)),
            Err(Unverified::MalformedTimestamp(
                "2021-02-25T15:02:10Z".to_owned()
            ))
        );
    }
}
