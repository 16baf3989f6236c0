//! A mentee's answer to a scheduled session: attending, or asking for another time.

use chrono::Utc;
use mentorstream_grpc::{authorize, field_violation, refusal};
use mentorstream_proto::mentorship::v1::{
    RespondToSessionRequest, RespondToSessionResponse, SessionResponse,
};
use mentorstream_tenancy::Scope;
use tonic::{Code, Request, Response, Status};

use crate::api::{Api, request_id, text, unavailable};
use crate::db;
use crate::sessions::{load, times};

/// The stored name of an answer.
fn stored(response: SessionResponse) -> Option<&'static str> {
    match response {
        SessionResponse::Unspecified => None,
        SessionResponse::Attending => Some("attending"),
        SessionResponse::RescheduleRequested => Some("reschedule_requested"),
    }
}

pub(crate) fn from_stored(name: &str) -> SessionResponse {
    match name {
        "attending" => SessionResponse::Attending,
        "reschedule_requested" => SessionResponse::RescheduleRequested,
        _ => SessionResponse::Unspecified,
    }
}

impl Api {
    pub(crate) async fn respond_to_session_invitation(
        &self,
        request: Request<RespondToSessionRequest>,
    ) -> Result<Response<RespondToSessionResponse>, Status> {
        let principal = authorize(&request, Scope::Write)?;
        let tenant = self.tenant(&principal).await?;
        let request = request.into_inner();
        let request_id = request_id(&request.request_id)?;
        let session_id = text("session_id", &request.session_id)?;
        let mentee_id = text("mentee_id", &request.mentee_id)?;
        let response = SessionResponse::try_from(request.response)
            .ok()
            .and_then(stored)
            .ok_or_else(|| {
                field_violation(
                    "response",
                    "must be SESSION_RESPONSE_ATTENDING or SESSION_RESPONSE_RESCHEDULE_REQUESTED",
                )
            })?;
        let tenant_id = tenant.tenant_id.as_str();
        let mut transaction = begin!(
            self,
            tenant,
            request_id,
            "RespondToSession",
            RespondToSessionResponse
        );
        let session = Self::scheduled(&mut transaction, tenant_id, session_id).await?;
        let (starts_at, _) = times(&session);
        if starts_at <= Utc::now() {
            return Err(refusal(
                Code::FailedPrecondition,
                "SESSION_STARTED",
                [],
                format!("session `{session_id}` started at {starts_at}; answers come before"),
            ));
        }
        let answered = sqlx::query!(
            "UPDATE session_mentees SET response = $4, responded_at = now() \
             WHERE tenant_id = $1 AND session_id = $2 AND mentee_id = $3",
            tenant_id,
            session_id,
            mentee_id,
            response
        )
        .execute(&mut *transaction)
        .await
        .map_err(unavailable)?;
        if answered.rows_affected() == 0 {
            return Err(refusal(
                Code::FailedPrecondition,
                "NOT_INVITED",
                [],
                format!("mentee `{mentee_id}` is not expected at session `{session_id}`"),
            ));
        }
        let session = load(&mut transaction, tenant_id, session_id, false)
            .await?
            .ok_or_else(|| unavailable("the session just written is gone"))?;
        let answer = RespondToSessionResponse {
            session: Some(session),
        };
        db::finish(
            transaction,
            tenant_id,
            request_id,
            "RespondToSession",
            &answer,
        )
        .await
        .map_err(crate::api::db_status)?;
        tracing::info!(
            tenant_id,
            session_id,
            mentee_id,
            response,
            "session answered"
        );
        Ok(Response::new(answer))
    }
}
