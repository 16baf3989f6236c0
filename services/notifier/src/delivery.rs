//! The two channels, both real: a signed JSON webhook to the tenant's chat-bot gateway and
//! e-mail over SMTP. Each attempt ends in an [`Outcome`] that says whether to retry.
//!
//! The webhook carries `x-mentorstream-timestamp` (Unix seconds) and
//! `x-mentorstream-signature: v1=<hex HMAC-SHA256 of "<timestamp>.<body>" with the tenant's
//! secret>`, and `idempotency-key` = the notification id, the same on every attempt, so a
//! gateway can drop a message it already has. An e-mail's `Message-ID` is derived from the
//! notification id for the same reason. Webhooks carry the W3C `traceparent` of the delivery.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use hmac::{Hmac, Mac as _};
use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Tokio1Executor};
use sha2::Sha256;

pub const TIMESTAMP_HEADER: &str = "x-mentorstream-timestamp";
pub const SIGNATURE_HEADER: &str = "x-mentorstream-signature";
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `code`: the HTTP status or SMTP reply code.
    Delivered { code: u16 },
    /// Worth another attempt: 5xx, 429, a timeout, no connection, an SMTP 4xx. `code` is 0
    /// when no answer came.
    Transient {
        code: u16,
        error: String,
        retry_after: Option<Duration>,
    },
    /// Another attempt would fail the same way: any other 4xx, an SMTP 5xx, a bad address.
    Permanent { code: u16, error: String },
}

/// The body of a webhook.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WebhookMessage<'a> {
    pub notification_id: &'a str,
    pub tenant_id: &'a str,
    pub recipient_id: &'a str,
    pub chatbot_user_id: &'a str,
    pub category: &'a str,
    pub locale: &'a str,
    pub subject: &'a str,
    pub text: &'a str,
    /// Buttons whose tokens the gateway posts back (crate::buttons); empty for none.
    pub actions: &'a [crate::buttons::Button],
}

/// `v1=<hex>`: the signature of `body` sent at `timestamp`.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

#[derive(Debug, Clone)]
pub struct Webhook {
    client: reqwest::Client,
}

impl Webhook {
    pub fn new(timeout: Duration) -> Result<Self, reqwest::Error> {
        Ok(Self {
            client: reqwest::Client::builder()
                .timeout(timeout)
                .user_agent(concat!("mentorstream-notifier/", env!("CARGO_PKG_VERSION")))
                .build()?,
        })
    }

    /// One attempt; `timestamp` is when it is made (Unix seconds).
    pub async fn send(
        &self,
        url: &str,
        secret: &str,
        timestamp: i64,
        message: &WebhookMessage<'_>,
    ) -> Outcome {
        let body = match serde_json::to_vec(message) {
            Ok(body) => body,
            Err(error) => {
                return Outcome::Permanent {
                    code: 0,
                    error: format!("cannot encode the webhook: {error}"),
                };
            }
        };
        let mut request = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, signature(secret, timestamp, &body))
            .header(IDEMPOTENCY_HEADER, message.notification_id);
        // The gateway may continue the trace (W3C traceparent) of the delivery.
        let mut trace = HashMap::new();
        mentorstream_telemetry::propagation::inject_current(&mut trace);
        for (name, value) in trace {
            request = request.header(name, value);
        }
        let sent = request.body(body).send().await;
        let response = match sent {
            Ok(response) => response,
            Err(error) => {
                return Outcome::Transient {
                    code: 0,
                    error: format!("no answer from the chat-bot gateway: {error}"),
                    retry_after: None,
                };
            }
        };
        let status = response.status();
        let code = status.as_u16();
        if status.is_success() {
            return Outcome::Delivered { code };
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = response.text().await.unwrap_or_default();
        let error = format!(
            "the chat-bot gateway answered {status}: {}",
            text.chars().take(200).collect::<String>()
        );
        if status.is_server_error() || code == 429 || code == 408 {
            Outcome::Transient {
                code,
                error,
                retry_after,
            }
        } else {
            Outcome::Permanent { code, error }
        }
    }
}

/// An e-mail to send.
#[derive(Debug, Clone)]
pub struct Email<'a> {
    pub notification_id: &'a str,
    pub from: &'a str,
    pub to: &'a str,
    pub subject: &'a str,
    pub body: &'a str,
}

/// SMTP transports, one per server URL, built on first use.
#[derive(Debug)]
pub struct Mailer {
    timeout: Duration,
    transports: Mutex<HashMap<String, AsyncSmtpTransport<Tokio1Executor>>>,
}

impl Mailer {
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            transports: Mutex::default(),
        }
    }

    fn transport(&self, smtp_url: &str) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
        let mut transports = self
            .transports
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(transport) = transports.get(smtp_url) {
            return Ok(transport.clone());
        }
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp_url)
            .map_err(|error| format!("the tenant's smtp_url is not usable: {error}"))?
            .timeout(Some(self.timeout))
            .build();
        transports.insert(smtp_url.to_owned(), transport.clone());
        Ok(transport)
    }

    pub async fn send(&self, smtp_url: &str, email: &Email<'_>) -> Outcome {
        let permanent = |error: String| Outcome::Permanent { code: 0, error };
        let transport = match self.transport(smtp_url) {
            Ok(transport) => transport,
            Err(error) => return permanent(error),
        };
        let from = match email.from.parse() {
            Ok(from) => from,
            Err(error) => return permanent(format!("bad sender `{}`: {error}", email.from)),
        };
        let to = match email.to.parse() {
            Ok(to) => to,
            Err(error) => return permanent(format!("bad recipient `{}`: {error}", email.to)),
        };
        let message = lettre::Message::builder()
            .message_id(Some(format!("<{}@mentorstream>", email.notification_id)))
            .from(from)
            .to(to)
            .subject(email.subject)
            .header(ContentType::TEXT_PLAIN)
            .body(email.body.to_owned());
        let message = match message {
            Ok(message) => message,
            Err(error) => return permanent(format!("cannot build the e-mail: {error}")),
        };
        match transport.send(message).await {
            Ok(response) => Outcome::Delivered {
                code: response.code().into(),
            },
            Err(error) => {
                let code = error.status().map_or(0, u16::from);
                let error_text = format!("the SMTP server refused the e-mail: {error}");
                if error.is_permanent() {
                    Outcome::Permanent {
                        code,
                        error: error_text,
                    }
                } else {
                    Outcome::Transient {
                        code,
                        error: error_text,
                        retry_after: None,
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Independently: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac secret
        assert_eq!(
            signature("secret", 1_700_000_000, br#"{"a":1}"#),
            "v1=49f24e537407743fa4a0242bb63b94b9a47ee99cbbe071ccd8a22550ae411686"
        );
    }
}
