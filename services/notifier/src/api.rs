//! NotificationService: partners' preferences, the notifications sent to a recipient with
//! every attempt, and retrying failed ones. Everything is scoped to the caller's tenant.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use mentorstream_grpc::{authorize, field_violation};
use mentorstream_proto::notification::v1 as proto;
use mentorstream_proto::notification::v1::notification_service_server::NotificationService;
use mentorstream_tenancy::Scope;
use sqlx::PgPool;
use tokio::sync::Notify;
use tonic::{Request, Response, Status};

use crate::clock::Clock;
use crate::kinds::{Category, Channel};
use crate::preferences::Preferences;

const DEFAULT_PAGE_SIZE: i64 = 50;
const MAX_PAGE_SIZE: i64 = 500;
const MAX_ID_CHARS: usize = 200;

#[derive(Debug)]
pub(crate) struct Api {
    pub(crate) pool: PgPool,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) dispatcher: Arc<Notify>,
}

fn unavailable(error: impl std::fmt::Display) -> Status {
    tracing::warn!(%error, "answering UNAVAILABLE");
    mentorstream_grpc::retry_later(
        "the notifier database cannot be reached right now; retry",
        "DATABASE_UNAVAILABLE",
        mentorstream_grpc::RETRY_AFTER,
        [],
    )
}

/// A required id: 1 to 200 characters, no control characters.
fn required<'a>(field: &str, value: &'a str) -> Result<&'a str, Status> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(field_violation(field, "is required"));
    }
    if trimmed.chars().count() > MAX_ID_CHARS || trimmed.chars().any(char::is_control) {
        return Err(field_violation(
            field,
            format!("must be at most {MAX_ID_CHARS} characters without control characters"),
        ));
    }
    Ok(trimmed)
}

fn timestamp(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: i32::try_from(time.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// A mutation's transaction, after its request id (if any) was checked: either the first
/// answer to return again, or a transaction to do the work in.
enum Begun<R> {
    Answered(R),
    Fresh(sqlx::Transaction<'static, sqlx::Postgres>),
}

impl Api {
    async fn begin<R: prost::Message + Default>(
        &self,
        tenant_id: &str,
        request_id: Option<&str>,
        method: &str,
    ) -> Result<Begun<R>, Status> {
        let mut transaction = self.pool.begin().await.map_err(unavailable)?;
        let Some(request_id) = request_id else {
            return Ok(Begun::Fresh(transaction));
        };
        // Retries of one request wait for each other.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1 || '/' || $2))")
            .bind(tenant_id)
            .bind(request_id)
            .execute(&mut *transaction)
            .await
            .map_err(unavailable)?;
        let answered: Option<(String, Vec<u8>)> = sqlx::query_as(
            "SELECT method, response FROM requests WHERE tenant_id = $1 AND request_id = $2",
        )
        .bind(tenant_id)
        .bind(request_id)
        .fetch_optional(&mut *transaction)
        .await
        .map_err(unavailable)?;
        match answered {
            None => Ok(Begun::Fresh(transaction)),
            Some((used_for, response)) if used_for == method => Ok(Begun::Answered(
                R::decode(&response[..]).map_err(unavailable)?,
            )),
            Some((used_for, _)) => Err(field_violation(
                "request_id",
                format!("request_id `{request_id}` was used for {used_for}"),
            )),
        }
    }

    async fn finish(
        mut transaction: sqlx::Transaction<'static, sqlx::Postgres>,
        tenant_id: &str,
        request_id: Option<&str>,
        method: &str,
        answer: &impl prost::Message,
    ) -> Result<(), Status> {
        if let Some(request_id) = request_id {
            sqlx::query(
                "INSERT INTO requests (tenant_id, request_id, method, response) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(tenant_id)
            .bind(request_id)
            .bind(method)
            .bind(answer.encode_to_vec())
            .execute(&mut *transaction)
            .await
            .map_err(unavailable)?;
        }
        transaction.commit().await.map_err(unavailable)
    }

    /// The notifications with these ids, with their attempts, in the order given.
    async fn notifications(
        &self,
        tenant_id: &str,
        ids: &[String],
    ) -> Result<Vec<proto::Notification>, Status> {
        // One snapshot for both reads: an attempt recorded between them would otherwise show
        // next to the notification's state from before it.
        let mut snapshot = self.pool.begin().await.map_err(unavailable)?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *snapshot)
            .await
            .map_err(unavailable)?;
        let rows: Vec<NotificationRow> = sqlx::query_as(
            "SELECT notification_id, recipient_id, category, cause, channel, status, due_at, \
                    delivered_at, locale, subject, body, status_reason \
             FROM notifications WHERE tenant_id = $1 AND notification_id = ANY($2)",
        )
        .bind(tenant_id)
        .bind(ids)
        .fetch_all(&mut *snapshot)
        .await
        .map_err(unavailable)?;
        let attempts: Vec<AttemptRow> = sqlx::query_as(
            "SELECT notification_id, at, channel, response_code, error FROM attempts \
             WHERE notification_id = ANY($1) ORDER BY notification_id, attempt",
        )
        .bind(ids)
        .fetch_all(&mut *snapshot)
        .await
        .map_err(unavailable)?;
        snapshot.commit().await.map_err(unavailable)?;
        let mut by_id: std::collections::HashMap<String, proto::Notification> = rows
            .into_iter()
            .map(|row| (row.notification_id.clone(), row.into_proto()))
            .collect();
        for attempt in attempts {
            if let Some(notification) = by_id.get_mut(&attempt.notification_id) {
                notification.attempts.push(proto::Attempt {
                    at: Some(timestamp(attempt.at)),
                    channel: channel_proto(Some(&attempt.channel)) as i32,
                    response_code: attempt.response_code.unsigned_abs(),
                    error: attempt.error,
                });
            }
        }
        Ok(ids.iter().filter_map(|id| by_id.remove(id)).collect())
    }
}

fn channel_proto(name: Option<&str>) -> proto::Channel {
    name.and_then(Channel::from_name)
        .map_or(proto::Channel::Unspecified, Channel::to_proto)
}

fn status_name(status: proto::NotificationStatus) -> Option<&'static str> {
    Some(match status {
        proto::NotificationStatus::Unspecified => return None,
        proto::NotificationStatus::Pending => "pending",
        proto::NotificationStatus::Delivered => "delivered",
        proto::NotificationStatus::Failed => "failed",
        proto::NotificationStatus::Suppressed => "suppressed",
        proto::NotificationStatus::Cancelled => "cancelled",
    })
}

fn status_proto(name: &str) -> proto::NotificationStatus {
    [
        proto::NotificationStatus::Pending,
        proto::NotificationStatus::Delivered,
        proto::NotificationStatus::Failed,
        proto::NotificationStatus::Suppressed,
        proto::NotificationStatus::Cancelled,
    ]
    .into_iter()
    .find(|status| status_name(*status) == Some(name))
    .unwrap_or(proto::NotificationStatus::Unspecified)
}

#[derive(sqlx::FromRow)]
struct NotificationRow {
    notification_id: String,
    recipient_id: String,
    category: String,
    cause: String,
    channel: Option<String>,
    status: String,
    due_at: DateTime<Utc>,
    delivered_at: Option<DateTime<Utc>>,
    locale: Option<String>,
    subject: Option<String>,
    body: Option<String>,
    status_reason: String,
}

impl NotificationRow {
    fn into_proto(self) -> proto::Notification {
        proto::Notification {
            notification_id: self.notification_id,
            recipient_id: self.recipient_id,
            category: Category::from_name(&self.category)
                .map_or(proto::Category::Unspecified, Category::to_proto)
                as i32,
            cause: self.cause,
            channel: channel_proto(self.channel.as_deref()) as i32,
            status: status_proto(&self.status) as i32,
            due_at: Some(timestamp(self.due_at)),
            delivered_at: self.delivered_at.map(timestamp),
            locale: self.locale.unwrap_or_default(),
            subject: self.subject.unwrap_or_default(),
            body: self.body.unwrap_or_default(),
            attempts: Vec::new(),
            status_reason: self.status_reason,
        }
    }
}

#[derive(sqlx::FromRow)]
struct AttemptRow {
    notification_id: String,
    at: DateTime<Utc>,
    channel: String,
    response_code: i32,
    error: String,
}

#[tonic::async_trait]
impl NotificationService for Api {
    async fn get_preferences(
        &self,
        request: Request<proto::GetPreferencesRequest>,
    ) -> Result<Response<proto::GetPreferencesResponse>, Status> {
        let principal = authorize(&request, Scope::Read)?;
        let partner_id = required("partner_id", &request.get_ref().partner_id)?;
        let preferences = Preferences::load(&self.pool, &principal.tenant_id, partner_id)
            .await
            .map_err(unavailable)?;
        Ok(Response::new(proto::GetPreferencesResponse {
            preferences: Some(preferences.to_proto()),
        }))
    }

    async fn update_preferences(
        &self,
        request: Request<proto::UpdatePreferencesRequest>,
    ) -> Result<Response<proto::UpdatePreferencesResponse>, Status> {
        const METHOD: &str = "UpdatePreferences";
        let principal = authorize(&request, Scope::Write)?;
        let request = request.into_inner();
        let request_id = (!request.request_id.is_empty())
            .then(|| required("request_id", &request.request_id))
            .transpose()?;
        let update = request
            .preferences
            .ok_or_else(|| field_violation("preferences", "is required"))?;
        // Checked alone first, so that a bad field is named as the caller sent it.
        let partner_id = Preferences::from_proto(update.clone())
            .map_err(|invalid| field_violation(invalid.field, invalid.reason))?
            .partner_id;
        let tenant_id = principal.tenant_id.as_str();
        let mut transaction = match self.begin(tenant_id, request_id, METHOD).await? {
            Begun::Answered(answer) => return Ok(Response::new(answer)),
            Begun::Fresh(transaction) => transaction,
        };
        // One update of a partner's preferences at a time: each merges with the last.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1 || '/preferences/' || $2))")
            .bind(tenant_id)
            .bind(&partner_id)
            .execute(&mut *transaction)
            .await
            .map_err(unavailable)?;
        let stored = Preferences::load(&mut *transaction, tenant_id, &partner_id)
            .await
            .map_err(unavailable)?;
        let preferences =
            crate::preferences::merge(stored.to_proto(), update, request.update_mask.as_ref())
                .and_then(Preferences::from_proto)
                .map_err(|invalid| field_violation(invalid.field, invalid.reason))?;
        preferences
            .store(&mut *transaction, tenant_id)
            .await
            .map_err(unavailable)?;
        let answer = proto::UpdatePreferencesResponse {
            preferences: Some(preferences.to_proto()),
        };
        Self::finish(transaction, tenant_id, request_id, METHOD, &answer).await?;
        // A partner who just gave an address may have notifications waiting for one.
        self.dispatcher.notify_one();
        Ok(Response::new(answer))
    }

    async fn list_notifications(
        &self,
        request: Request<proto::ListNotificationsRequest>,
    ) -> Result<Response<proto::ListNotificationsResponse>, Status> {
        let principal = authorize(&request, Scope::Read)?;
        let request = request.get_ref();
        let recipient_id = required("recipient_id", &request.recipient_id)?;
        let status = proto::NotificationStatus::try_from(request.status).map_err(|_| {
            field_violation("status", format!("{} is not a status", request.status))
        })?;
        let page_size = match i64::from(request.page_size) {
            0 => DEFAULT_PAGE_SIZE,
            size if size <= MAX_PAGE_SIZE => size,
            size => {
                return Err(field_violation(
                    "page_size",
                    format!("must be at most {MAX_PAGE_SIZE}, got {size}"),
                ));
            }
        };
        // Ids are UUIDv7, so their order is their creation order and a page ends at an id.
        if !request.page_token.is_empty() && uuid::Uuid::try_parse(&request.page_token).is_err() {
            return Err(field_violation(
                "page_token",
                "is not a token this server issued",
            ));
        }
        let mut ids: Vec<String> = sqlx::query_scalar(
            "SELECT notification_id FROM notifications \
             WHERE tenant_id = $1 AND recipient_id = $2 AND ($3 = '' OR status = $3) \
               AND ($4 = '' OR notification_id > $4) \
             ORDER BY notification_id LIMIT $5",
        )
        .bind(&principal.tenant_id)
        .bind(recipient_id)
        .bind(status_name(status).unwrap_or_default())
        .bind(&request.page_token)
        .bind(page_size + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        let more = ids.len() > usize::try_from(page_size).unwrap_or(usize::MAX);
        ids.truncate(usize::try_from(page_size).unwrap_or(usize::MAX));
        let next_page_token = if more {
            ids.last().cloned().unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(proto::ListNotificationsResponse {
            notifications: self.notifications(&principal.tenant_id, &ids).await?,
            next_page_token,
        }))
    }

    async fn retry_notification(
        &self,
        request: Request<proto::RetryNotificationRequest>,
    ) -> Result<Response<proto::RetryNotificationResponse>, Status> {
        const METHOD: &str = "RetryNotification";
        let principal = authorize(&request, Scope::Write)?;
        let request = request.into_inner();
        let request_id = (!request.request_id.is_empty())
            .then(|| required("request_id", &request.request_id))
            .transpose()?;
        let notification_id = required("notification_id", &request.notification_id)?;
        let tenant_id = principal.tenant_id.as_str();
        let mut transaction = match self.begin(tenant_id, request_id, METHOD).await? {
            Begun::Answered(answer) => return Ok(Response::new(answer)),
            Begun::Fresh(transaction) => transaction,
        };
        let status: Option<String> = sqlx::query_scalar(
            "SELECT status FROM notifications \
             WHERE tenant_id = $1 AND notification_id = $2 FOR UPDATE",
        )
        .bind(tenant_id)
        .bind(notification_id)
        .fetch_optional(&mut *transaction)
        .await
        .map_err(unavailable)?;
        match status.as_deref() {
            None => {
                return Err(Status::not_found(format!(
                    "no notification `{notification_id}`"
                )));
            }
            Some("failed") => {}
            Some(other) => {
                return Err(Status::failed_precondition(format!(
                    "notification `{notification_id}` is {other}; only failed notifications \
                     can be retried"
                )));
            }
        }
        // A retry chooses the channel again (the preferences may have changed since) and
        // starts a fresh attempt budget.
        sqlx::query(
            "UPDATE notifications SET status = 'pending', next_attempt_at = $2, \
                 attempts_before_retry = attempts, channel = NULL, address = NULL, \
                 locale = NULL, subject = NULL, body = NULL, \
                 status_reason = 'retry requested' \
             WHERE notification_id = $1",
        )
        .bind(notification_id)
        .bind(self.clock.now())
        .execute(&mut *transaction)
        .await
        .map_err(unavailable)?;
        // The answer shows the notification as it is inside this transaction.
        let row: NotificationRow = sqlx::query_as(
            "SELECT notification_id, recipient_id, category, cause, channel, status, due_at, \
                    delivered_at, locale, subject, body, status_reason \
             FROM notifications WHERE notification_id = $1",
        )
        .bind(notification_id)
        .fetch_one(&mut *transaction)
        .await
        .map_err(unavailable)?;
        let answer = proto::RetryNotificationResponse {
            notification: Some(row.into_proto()),
        };
        Self::finish(transaction, tenant_id, request_id, METHOD, &answer).await?;
        self.dispatcher.notify_one();
        Ok(Response::new(answer))
    }
}
