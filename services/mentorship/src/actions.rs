//! ActionService: a chat-bot button pressed, posted back with the action token its message
//! carried, taken as the mentorship call it stands for.
//!
//! The token is the only credential (its path is public in the API-key layer). A verified
//! token acts as a `write` principal of its tenant, limited to its session and partner, and
//! the call goes through the same handler as RespondToSession or SubmitFeedback, with
//! `request_id` = `action:<token id>`, so a retry after a crash answers what the first call
//! did. The token's use is claimed by one attempt before the call and marked complete by it
//! after: another action on the same token is refused as used; the same press again after
//! it completed (a double tap, a gateway's retry) answers as the first did and changes
//! nothing, while a RATE with another rating or comment is refused as used; the same one while
//! an attempt is under way is asked to retry, and an attempt that stayed unfinished for
//! [`STALE_CLAIM`] (its process died) is taken over.

use chrono::Utc;
use mentorstream_actions::{Action, Claims, Signer, TokenError};
use mentorstream_grpc::{field_violation, refusal};
use mentorstream_proto::mentorship::v1 as proto;
use mentorstream_proto::mentorship::v1::action_service_server::ActionService;
use mentorstream_proto::mentorship::v1::{
    RedeemActionRequest, RedeemActionResponse, RespondToSessionRequest, SessionResponse,
    SubmitFeedbackRequest,
};
use mentorstream_tenancy::{Principal, Scope, Scopes};
use tonic::{Code, Request, Response, Status};
use tracing::Instrument as _;

use crate::api::{Api, unavailable};
use crate::sessions::load;

/// What [`Actions::claim`] found.
enum Claim {
    /// This attempt takes the action, as the attempt id.
    Attempt(String),
    /// An earlier press took the same action.
    Done,
}

/// How long an unfinished claim belongs to its attempt before another may take it over.
const STALE_CLAIM: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct Actions {
    pub api: Api,
    /// None while `actions.signing_key` is empty: every token is refused.
    pub signer: Option<Signer>,
}

#[tonic::async_trait]
impl ActionService for Actions {
    async fn redeem_action(
        &self,
        request: Request<RedeemActionRequest>,
    ) -> Result<Response<RedeemActionResponse>, Status> {
        let request = request.into_inner();
        let span = tracing::info_span!("mentorship.action", action = request.action);
        self.redeem(request).instrument(span).await
    }
}

impl Actions {
    async fn redeem(
        &self,
        request: RedeemActionRequest,
    ) -> Result<Response<RedeemActionResponse>, Status> {
        let action = action(request.action)?;
        let signer = self.signer.as_ref().ok_or_else(|| {
            refusal(
                Code::FailedPrecondition,
                "ACTIONS_NOT_CONFIGURED",
                [],
                "chat-bot buttons are off here: actions.signing_key is not set",
            )
        })?;
        let claims: Claims = signer
            .verify(&request.token, Utc::now())
            .map_err(|error| token_status(&error))?;
        if !claims.actions.contains(&action) {
            let offered: Vec<&str> = claims.actions.iter().map(|action| action.name()).collect();
            return Err(refusal(
                Code::PermissionDenied,
                "ACTION_NOT_OFFERED",
                [],
                format!(
                    "this token offers {}, not {}",
                    offered.join(", "),
                    action.name()
                ),
            ));
        }
        tracing::info!(
            tenant_id = claims.tenant_id,
            session_id = claims.session_id,
            action = action.name(),
            "button pressed"
        );
        match self.claim(&claims, action).await? {
            Claim::Attempt(attempt) => match self.take(&claims, action, &request).await {
                Ok(()) => self.complete(&claims, &attempt).await?,
                Err(status) => {
                    self.release(&claims, &attempt).await;
                    return Err(status);
                }
            },
            // Pressed again (a double tap, a gateway's retry): the same answer, nothing new.
            Claim::Done => self.same_press(&claims, action, &request).await?,
        }
        let mut connection = self.api.pool.acquire().await.map_err(unavailable)?;
        let session = load(
            &mut connection,
            &claims.tenant_id,
            &claims.session_id,
            false,
        )
        .await?;
        Ok(Response::new(RedeemActionResponse {
            action: request.action,
            session: session.map(|session| as_seen_by(session, &claims.partner_id)),
            session_id: claims.session_id,
            partner_id: claims.partner_id,
        }))
    }

    /// Records that this attempt uses the token for `action`: its attempt id; or that an
    /// earlier press took this very action. Refused when the token was used for another
    /// action, or is being used for another action.
    async fn claim(&self, claims: &Claims, action: Action) -> Result<Claim, Status> {
        let attempt = uuid::Uuid::new_v4().simple().to_string();
        let stale = chrono::Duration::from_std(STALE_CLAIM).unwrap_or_default();
        loop {
            let claimed = sqlx::query!(
                "INSERT INTO action_token_uses (token_id, tenant_id, action, attempt) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (token_id) DO NOTHING",
                claims.token_id,
                claims.tenant_id,
                action.name(),
                attempt
            )
            .execute(&self.api.pool)
            .await
            .map_err(unavailable)?;
            if claimed.rows_affected() == 1 {
                return Ok(Claim::Attempt(attempt));
            }
            let Some(used) = sqlx::query!(
                "SELECT action, completed, used_at, attempt FROM action_token_uses \
                 WHERE token_id = $1",
                claims.token_id
            )
            .fetch_optional(&self.api.pool)
            .await
            .map_err(unavailable)?
            else {
                // Released meanwhile by a failed attempt: claim it again.
                continue;
            };
            if used.completed && used.action == action.name() {
                return Ok(Claim::Done);
            }
            if used.completed || used.action != action.name() {
                return Err(refusal(
                    Code::AlreadyExists,
                    "ACTION_TOKEN_USED",
                    [("used_for", used.action.as_str())],
                    format!(
                        "this button was already used ({} at {}); a token works once",
                        used.action, used.used_at
                    ),
                ));
            }
            if Utc::now() - used.used_at < stale {
                return Err(mentorstream_grpc::retry_later(
                    "this button's action is being taken right now; retry",
                    "ACTION_IN_PROGRESS",
                    mentorstream_grpc::RETRY_AFTER,
                    [],
                ));
            }
            // The same action, left unfinished by an attempt that died: its request_id lets
            // this one finish it.
            let taken = sqlx::query!(
                "UPDATE action_token_uses SET attempt = $2, used_at = now() \
                 WHERE token_id = $1 AND attempt = $3 AND NOT completed",
                claims.token_id,
                attempt,
                used.attempt
            )
            .execute(&self.api.pool)
            .await
            .map_err(unavailable)?;
            if taken.rows_affected() == 1 {
                return Ok(Claim::Attempt(attempt));
            }
        }
    }

    /// Whether a press of a button already taken is the same press: ATTEND and RESCHEDULE are
    /// their action alone; a RATE must carry the rating and comment that were recorded.
    async fn same_press(
        &self,
        claims: &Claims,
        action: Action,
        request: &RedeemActionRequest,
    ) -> Result<(), Status> {
        if action != Action::Rate {
            return Ok(());
        }
        let recorded: Option<(i32, String)> = sqlx::query_as(
            "SELECT rating, comment FROM feedback \
             WHERE tenant_id = $1 AND session_id = $2 AND mentee_id = $3",
        )
        .bind(&claims.tenant_id)
        .bind(&claims.session_id)
        .bind(&claims.partner_id)
        .fetch_optional(&self.api.pool)
        .await
        .map_err(unavailable)?;
        let asked = (
            i32::try_from(request.rating).unwrap_or(i32::MAX),
            request.comment.clone(),
        );
        if recorded.as_ref() == Some(&asked) {
            return Ok(());
        }
        let rated = recorded.map_or_else(String::new, |(rating, _)| format!(", rated {rating}"));
        Err(refusal(
            Code::AlreadyExists,
            "ACTION_TOKEN_USED",
            [("used_for", action.name())],
            format!("this button was already used (RATE{rated}); a token works once"),
        ))
    }

    async fn complete(&self, claims: &Claims, attempt: &str) -> Result<(), Status> {
        let completed = sqlx::query!(
            "UPDATE action_token_uses SET completed = true WHERE token_id = $1 AND attempt = $2",
            claims.token_id,
            attempt
        )
        .execute(&self.api.pool)
        .await
        .map_err(unavailable)?;
        if completed.rows_affected() == 0 {
            // Taken over after STALE_CLAIM: the other attempt, with the same request_id,
            // completes it.
            tracing::warn!(
                token_id = claims.token_id,
                "an action token's claim was taken over"
            );
        }
        Ok(())
    }

    /// Gives this attempt's unfinished claim back, so the button can be pressed again after a
    /// refusal.
    async fn release(&self, claims: &Claims, attempt: &str) {
        let released = sqlx::query!(
            "DELETE FROM action_token_uses WHERE token_id = $1 AND attempt = $2 AND NOT completed",
            claims.token_id,
            attempt
        )
        .execute(&self.api.pool)
        .await;
        if let Err(error) = released {
            tracing::warn!(%error, token_id = claims.token_id, "cannot release an action token");
        }
    }

    /// The mentorship call the action stands for, as the token's partner.
    async fn take(
        &self,
        claims: &Claims,
        action: Action,
        request: &RedeemActionRequest,
    ) -> Result<(), Status> {
        let request_id = format!("action:{}", claims.token_id);
        match action {
            Action::Attend | Action::Reschedule => {
                let response = if action == Action::Attend {
                    SessionResponse::Attending
                } else {
                    SessionResponse::RescheduleRequested
                };
                let call = acting(
                    claims,
                    RespondToSessionRequest {
                        request_id,
                        session_id: claims.session_id.clone(),
                        mentee_id: claims.partner_id.clone(),
                        response: response.into(),
                    },
                );
                self.api.respond_to_session_invitation(call).await?;
            }
            Action::Rate => {
                let call = acting(
                    claims,
                    SubmitFeedbackRequest {
                        request_id,
                        session_id: claims.session_id.clone(),
                        mentee_id: claims.partner_id.clone(),
                        rating: request.rating,
                        comment: request.comment.clone(),
                        occurred_at: None,
                    },
                );
                self.api.submit_session_feedback(call).await?;
            }
        }
        Ok(())
    }
}

/// `session` as its partner may see it: their own place in it, no notes, no other mentees.
fn as_seen_by(mut session: proto::Session, partner_id: &str) -> proto::Session {
    session.notes.clear();
    session.cancel_reason.clear();
    session.mentee_ids.retain(|mentee| mentee == partner_id);
    session.attendee_ids.retain(|mentee| mentee == partner_id);
    session
        .responses
        .retain(|response| response.mentee_id == partner_id);
    session
}

/// `message` as a call of the token's tenant with the `write` scope.
fn acting<T>(claims: &Claims, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.extensions_mut().insert(Principal {
        tenant_id: claims.tenant_id.clone(),
        key_id: format!("action-token:{}", claims.token_id),
        scopes: Scopes::default().with(Scope::Write),
    });
    request
}

fn action(value: i32) -> Result<Action, Status> {
    match proto::Action::try_from(value) {
        Ok(proto::Action::Attend) => Ok(Action::Attend),
        Ok(proto::Action::Reschedule) => Ok(Action::Reschedule),
        Ok(proto::Action::Rate) => Ok(Action::Rate),
        Ok(proto::Action::Unspecified) | Err(_) => Err(field_violation(
            "action",
            "must be ACTION_ATTEND, ACTION_RESCHEDULE or ACTION_RATE",
        )),
    }
}

fn token_status(error: &TokenError) -> Status {
    let reason = match error {
        TokenError::Malformed => "ACTION_TOKEN_MALFORMED",
        TokenError::Forged => "ACTION_TOKEN_INVALID",
        TokenError::Expired(_) => "ACTION_TOKEN_EXPIRED",
    };
    refusal(Code::Unauthenticated, reason, [], error.to_string())
}
