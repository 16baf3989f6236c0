//! The buttons of a chat-bot message: a session reminder to a mentee offers "I'll attend" and
//! "Please reschedule" until the session starts; a feedback request offers the rating (1–5,
//! with a comment) for `actions.rating_valid_for`. Each button carries an action token that
//! the gateway posts back to mentorship's ActionService (docs/chatbot.md).
//!
//! The token id is the notification id, so every attempt of one notification sends the same
//! single-use token, whichever copy the gateway keeps.

use std::time::Duration;

use chrono::{DateTime, Utc};
use mentorstream_actions::{Action, Claims, Signer};
use serde_json::Value;

use crate::kinds::Kind;

#[derive(Debug, Clone)]
pub struct Buttons {
    /// None while `actions.signing_key` is empty: messages carry no buttons.
    pub signer: Option<Signer>,
    pub rating_valid_for: Duration,
}

/// One button of a webhook message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Button {
    /// ATTEND, RESCHEDULE or RATE: what to post back as `action` (with the `ACTION_` prefix of
    /// the API's enum, or as here: both are accepted by the proto3 JSON mapping).
    pub action: &'static str,
    /// What to show, in the message's language.
    pub label: &'static str,
    /// Post it back as `token` to `POST /v1/action/RedeemAction` (or the gRPC call).
    pub token: String,
}

/// The notification a message is for, as far as buttons care.
#[derive(Debug, Clone, Copy)]
pub struct ForMessage<'a> {
    pub notification_id: &'a str,
    pub tenant_id: &'a str,
    pub recipient_id: &'a str,
    pub kind: Option<Kind>,
    pub params: &'a Value,
    pub locale: &'a str,
}

impl Buttons {
    /// The buttons of `message` at `now`; none for kinds without an answer or a session that
    /// has started.
    pub fn of(&self, message: ForMessage<'_>, now: DateTime<Utc>) -> Vec<Button> {
        let Some(signer) = &self.signer else {
            return Vec::new();
        };
        let Some(session_id) = message.params["session_id"].as_str() else {
            return Vec::new();
        };
        let (actions, expires_at) = match message.kind {
            Some(Kind::Reminder24h | Kind::Reminder15m) => {
                let starts_at = message.params["starts_at"]
                    .as_str()
                    .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
                    .map(|time| time.with_timezone(&Utc));
                match (message.params["role"].as_str(), starts_at) {
                    (Some("mentee"), Some(starts_at)) if starts_at > now => {
                        (vec![Action::Attend, Action::Reschedule], starts_at)
                    }
                    _ => return Vec::new(),
                }
            }
            Some(Kind::FeedbackRequest) => (vec![Action::Rate], now + self.rating_valid_for),
            _ => return Vec::new(),
        };
        let claims = Claims {
            token_id: message.notification_id.to_owned(),
            tenant_id: message.tenant_id.to_owned(),
            session_id: session_id.to_owned(),
            partner_id: message.recipient_id.to_owned(),
            actions: actions.clone(),
            expires_at: expires_at.timestamp(),
        };
        let token = signer.issue(&claims);
        let russian = message.locale.starts_with("ru");
        actions
            .into_iter()
            .map(|action| Button {
                action: action.name(),
                label: label(action, russian),
                token: token.clone(),
            })
            .collect()
    }
}

fn label(action: Action, russian: bool) -> &'static str {
    match (action, russian) {
        (Action::Attend, false) => "I'll attend",
        (Action::Attend, true) => "Буду",
        (Action::Reschedule, false) => "Please reschedule",
        (Action::Reschedule, true) => "Прошу перенести",
        (Action::Rate, false) => "Rate the session",
        (Action::Rate, true) => "Оценить встречу",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn buttons() -> Buttons {
        Buttons {
            signer: Some(Signer::new(b"0123456789abcdef0123456789abcdef").expect("key")),
            rating_valid_for: Duration::from_secs(7 * 24 * 3600),
        }
    }

    fn signer() -> Signer {
        buttons().signer.expect("a signer")
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("time")
            .with_timezone(&Utc)
    }

    fn message<'a>(kind: Kind, params: &'a Value, locale: &'a str) -> ForMessage<'a> {
        ForMessage {
            notification_id: "n-1",
            tenant_id: "acme",
            recipient_id: "p-1",
            kind: Some(kind),
            params,
            locale,
        }
    }

    #[test]
    fn a_mentee_reminder_offers_attend_and_reschedule_until_the_session_starts() {
        let params = json!({"session_id": "s-1", "role": "mentee", "starts_at": "2026-12-02T10:00:00+00:00"});
        let now = at("2026-12-01T10:00:00Z");
        let offered = buttons().of(message(Kind::Reminder24h, &params, "ru-RU"), now);
        assert_eq!(
            offered
                .iter()
                .map(|b| (b.action, b.label))
                .collect::<Vec<_>>(),
            [("ATTEND", "Буду"), ("RESCHEDULE", "Прошу перенести")]
        );
        let claims: Claims = signer().verify(&offered[0].token, now).expect("valid");
        assert_eq!(
            claims,
            Claims {
                token_id: "n-1".into(),
                tenant_id: "acme".into(),
                session_id: "s-1".into(),
                partner_id: "p-1".into(),
                actions: vec![Action::Attend, Action::Reschedule],
                expires_at: at("2026-12-02T10:00:00Z").timestamp(),
            }
        );
        let mentor = json!({"session_id": "s-1", "role": "mentor", "starts_at": "2026-12-02T10:00:00+00:00"});
        assert_eq!(
            buttons().of(message(Kind::Reminder15m, &mentor, "en"), now),
            []
        );
        let started = at("2026-12-02T10:00:00Z");
        assert_eq!(
            buttons().of(message(Kind::Reminder15m, &params, "en"), started),
            []
        );
    }

    #[test]
    fn a_feedback_request_offers_the_rating_for_seven_days() {
        let params = json!({"session_id": "s-1"});
        let now = at("2026-12-01T10:00:00Z");
        let offered = buttons().of(message(Kind::FeedbackRequest, &params, "en"), now);
        assert_eq!(offered.len(), 1);
        assert_eq!(
            (offered[0].action, offered[0].label),
            ("RATE", "Rate the session")
        );
        let claims: Claims = signer().verify(&offered[0].token, now).expect("valid");
        assert_eq!(claims.expires_at, at("2026-12-08T10:00:00Z").timestamp());
        assert_eq!(
            buttons().of(message(Kind::FirstSale, &params, "en"), now),
            []
        );
    }
}
