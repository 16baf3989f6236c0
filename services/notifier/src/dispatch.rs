//! Delivering what is due. Each round claims due notifications under a lease (so a crashed
//! instance's claims pass to another after the lease), decides per notification — opted out,
//! quiet hours, daily cap, which channel — renders it once, sends it, and records the
//! attempt. Transient failures come back after an exponential backoff with jitter; the
//! attempt limit and permanent failures end as FAILED.
//!
//! Exactly one message per cause: a notification is one row per (recipient, cause), and it is
//! marked delivered in the same transaction that records its successful attempt. Only a crash
//! between the gateway's answer and that commit sends it again, with the same idempotency key
//! (webhook) or Message-ID (e-mail), so the receiver can tell.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone as _, Utc};
use chrono_tz::Tz;
use futures::future::join_all;
use mentorstream_config::NotifierConfig;
use mentorstream_tenancy::{TenantChannels, Tenants};
use rand::Rng as _;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::buttons::{Buttons, ForMessage};
use crate::clock::Clock;
use crate::delivery::{Email, Mailer, Outcome, Webhook, WebhookMessage};
use crate::digest::{self, KpiReader};
use crate::kinds::{Channel, Kind};
use crate::preferences::{self, Preferences};
use crate::templates::Templates;

/// Notifications claimed at once by one instance.
const CLAIM_BATCH: i64 = 16;
/// A claim outlives the attempt's send timeout (twice: the tenant's channels are read first)
/// by this much, covering a digest's KpiService read: only then may another instance (or
/// this one, restarted) take it over.
const LEASE_SLACK: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("the notifier database is unavailable: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Tenancy(#[from] mentorstream_tenancy::TenancyError),
}

/// A notification claimed for one attempt.
#[derive(Debug, sqlx::FromRow)]
struct Claimed {
    notification_id: String,
    tenant_id: String,
    recipient_id: String,
    category: String,
    kind: String,
    params: Value,
    attempts: i32,
    attempts_before_retry: i32,
    channel: Option<String>,
    address: Option<String>,
    locale: Option<String>,
    subject: Option<String>,
    body: Option<String>,
    traceparent: String,
    /// The recipient's time zone (for rendering), not stored.
    #[sqlx(skip)]
    time_zone: Option<Tz>,
}

/// A group whose mentor may be due a digest.
#[derive(sqlx::FromRow)]
struct DigestGroup {
    tenant_id: String,
    group_id: String,
    mentor_id: String,
    since: DateTime<Utc>,
    time_zone: Option<String>,
}

/// What the claim decided for one notification.
enum Decision {
    Send,
    Defer(DateTime<Utc>, String),
    Suppress(String),
    Fail(String),
}

#[derive(Debug)]
pub struct Dispatcher {
    pub pool: PgPool,
    pub tenants: Tenants,
    pub clock: Arc<dyn Clock>,
    pub config: NotifierConfig,
    pub templates: Templates,
    pub webhook: Webhook,
    pub mailer: Mailer,
    pub kpi: KpiReader,
    pub buttons: Buttons,
}

impl Dispatcher {
    /// Rounds every `dispatch_interval`, or at once when woken, until shutdown.
    pub async fn run(&self, wake: &Notify, shutdown: CancellationToken) {
        loop {
            if let Err(error) = self.round().await {
                tracing::warn!(%error, "dispatch round failed; retrying next round");
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = wake.notified() => {}
                () = tokio::time::sleep(self.config.dispatch_interval) => {}
            }
        }
    }

    /// Plans due digests, then sends everything due, batch after batch.
    pub async fn round(&self) -> Result<(), DispatchError> {
        self.plan_digests().await?;
        let (due,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM notifications WHERE status = 'pending' AND next_attempt_at <= $1",
        )
        .bind(self.clock.now())
        .fetch_one(&self.pool)
        .await?;
        crate::metrics::due(due);
        loop {
            let claimed = self.claim().await?;
            if claimed.is_empty() {
                return Ok(());
            }
            for result in join_all(claimed.into_iter().map(|claimed| self.attempt(claimed))).await {
                result?;
            }
        }
    }

    /// Stores this week's digest of every group that has none in the last 7 days and existed
    /// before it was due, for the group's mentor.
    async fn plan_digests(&self) -> Result<(), DispatchError> {
        let now = self.clock.now();
        let groups: Vec<DigestGroup> = sqlx::query_as(
            "SELECT g.tenant_id, g.group_id, g.mentor_id, g.since, p.time_zone FROM groups g \
                 LEFT JOIN preferences p \
                     ON p.tenant_id = g.tenant_id AND p.partner_id = g.mentor_id \
                 WHERE NOT EXISTS (SELECT 1 FROM notifications n \
                     WHERE n.tenant_id = g.tenant_id AND n.cause_group = 'digest:' || g.group_id \
                       AND n.due_at > $1)",
        )
        .bind(now - TimeDelta::days(7))
        .fetch_all(&self.pool)
        .await?;
        for DigestGroup {
            tenant_id,
            group_id,
            mentor_id,
            since,
            time_zone,
        } in groups
        {
            let time_zone = match time_zone
                .as_deref()
                .and_then(|zone| zone.parse::<Tz>().ok())
            {
                Some(zone) => zone,
                None => self.tenants.cached_tenant(&tenant_id).await?.time_zone,
            };
            let Some((due_at, week_start)) = digest::due_digest(now, time_zone) else {
                continue;
            };
            if since >= due_at {
                continue;
            }
            let mut connection = self.pool.acquire().await?;
            crate::causes::plan(
                &mut connection,
                &tenant_id,
                &crate::causes::Planned {
                    recipient_id: mentor_id,
                    kind: Kind::WeeklyDigest,
                    cause: format!("digest:{group_id}:{}", digest::week_label(week_start)),
                    cause_group: format!("digest:{group_id}"),
                    params: json!({ "group_id": group_id, "week_start": week_start.to_string() }),
                    due_at,
                },
            )
            .await?;
        }
        Ok(())
    }

    /// Claims due notifications, deciding for each whether and where to send it.
    async fn claim(&self) -> Result<Vec<Claimed>, DispatchError> {
        /// How long notifications wait when their tenant's secrets cannot be opened.
        const SEALED_RETRY: TimeDelta = TimeDelta::minutes(5);
        let now = self.clock.now();
        let lease_until = now
            + TimeDelta::from_std(self.config.send_timeout * 2 + LEASE_SLACK)
                .unwrap_or(TimeDelta::minutes(5));
        let mut transaction = self.pool.begin().await?;
        let due: Vec<Claimed> = sqlx::query_as(
            "SELECT notification_id, tenant_id, recipient_id, category, kind, params, attempts, \
                    attempts_before_retry, channel, address, locale, subject, body, traceparent \
             FROM notifications \
             WHERE status = 'pending' AND next_attempt_at <= $1 \
               AND (lease_until IS NULL OR lease_until <= $1) \
             ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED",
        )
        .bind(now)
        .bind(CLAIM_BATCH)
        .fetch_all(&mut *transaction)
        .await?;
        let mut channels_of: HashMap<String, TenantChannels> = HashMap::new();
        let mut claimed = Vec::new();
        for mut notification in due {
            let tenant = self.tenants.cached_tenant(&notification.tenant_id).await?;
            if !channels_of.contains_key(&notification.tenant_id) {
                match self.tenants.channels(&notification.tenant_id).await {
                    Ok(channels) => {
                        channels_of.insert(notification.tenant_id.clone(), channels);
                    }
                    // One tenant's secrets that cannot be opened (a key dropped too early)
                    // must not hold up every other tenant: its notifications wait.
                    Err(mentorstream_tenancy::TenancyError::Sealed(error)) => {
                        tracing::warn!(tenant_id = %notification.tenant_id, %error, "cannot open the tenant's channel secrets; its notifications wait");
                        sqlx::query(
                            "UPDATE notifications SET next_attempt_at = $2, status_reason = $3 \
                             WHERE notification_id = $1",
                        )
                        .bind(&notification.notification_id)
                        .bind(now + SEALED_RETRY)
                        .bind(format!(
                            "the tenant's channel secrets cannot be opened: {error}"
                        ))
                        .execute(&mut *transaction)
                        .await?;
                        continue;
                    }
                    Err(other) => return Err(other.into()),
                }
            }
            let channels = &channels_of[&notification.tenant_id];
            let preferences = Preferences::load(
                &self.pool,
                &notification.tenant_id,
                &notification.recipient_id,
            )
            .await?;
            let time_zone = preferences.time_zone.unwrap_or(tenant.time_zone);
            // Serialises the daily-cap count with other instances claiming for this recipient.
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1 || '/' || $2))")
                .bind(&notification.tenant_id)
                .bind(&notification.recipient_id)
                .execute(&mut *transaction)
                .await?;
            let decision = self
                .decide(
                    &mut notification,
                    &preferences,
                    channels,
                    &tenant.default_locale,
                    time_zone,
                    now,
                    &mut transaction,
                )
                .await?;
            let id = &notification.notification_id;
            match decision {
                Decision::Send => {
                    sqlx::query(
                        "UPDATE notifications SET lease_until = $2, channel = $3, address = $4, \
                             locale = $5 WHERE notification_id = $1",
                    )
                    .bind(id)
                    .bind(lease_until)
                    .bind(&notification.channel)
                    .bind(&notification.address)
                    .bind(&notification.locale)
                    .execute(&mut *transaction)
                    .await?;
                    notification.time_zone = Some(time_zone);
                    claimed.push(notification);
                }
                Decision::Defer(until, reason) => {
                    crate::metrics::deferred();
                    sqlx::query(
                        "UPDATE notifications SET next_attempt_at = $2, status_reason = $3 \
                         WHERE notification_id = $1",
                    )
                    .bind(id)
                    .bind(until)
                    .bind(reason)
                    .execute(&mut *transaction)
                    .await?;
                }
                Decision::Suppress(reason) => {
                    crate::metrics::unsent("suppressed");
                    finish(&mut transaction, id, "suppressed", &reason).await?;
                }
                Decision::Fail(reason) => {
                    crate::metrics::unsent("failed");
                    finish(&mut transaction, id, "failed", &reason).await?;
                }
            }
        }
        transaction.commit().await?;
        Ok(claimed)
    }

    /// Whether `notification` goes out now; on its first attempt also fixes its channel,
    /// address and locale, so every retry sends the same message to the same place.
    #[allow(clippy::too_many_arguments)]
    async fn decide(
        &self,
        notification: &mut Claimed,
        preferences: &Preferences,
        channels: &TenantChannels,
        tenant_locale: &str,
        time_zone: Tz,
        now: DateTime<Utc>,
        transaction: &mut sqlx::PgConnection,
    ) -> Result<Decision, DispatchError> {
        let Some(kind) = Kind::from_name(&notification.kind) else {
            return Ok(Decision::Fail(format!(
                "unknown kind `{}` (written by a newer notifier?)",
                notification.kind
            )));
        };
        let category = kind.category();
        if preferences.opted_out.contains(&category) {
            return Ok(Decision::Suppress(format!(
                "the recipient opted out of {}",
                category.name()
            )));
        }
        if let Some(until) = preferences
            .quiet_hours
            .and_then(|quiet| quiet.deferral(now, time_zone))
        {
            let local = until.with_timezone(&time_zone);
            return Ok(Decision::Defer(
                until,
                format!(
                    "deferred by quiet hours until {} ({})",
                    local.format("%Y-%m-%d %H:%M"),
                    time_zone.name()
                ),
            ));
        }
        let cap = if preferences.daily_cap > 0 {
            i64::from(preferences.daily_cap)
        } else {
            i64::from(channels.daily_cap)
        };
        let local_midnight = time_zone
            .from_local_datetime(
                &now.with_timezone(&time_zone)
                    .date_naive()
                    .and_time(chrono::NaiveTime::MIN),
            )
            .earliest()
            .map_or(now - TimeDelta::days(1), |midnight| {
                midnight.with_timezone(&Utc)
            });
        let (sent_today,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM notifications              WHERE tenant_id = $1 AND recipient_id = $2 AND notification_id <> $3                AND ((status = 'delivered' AND delivered_at >= $4)                     OR (status = 'pending' AND lease_until > $5))",
        )
        .bind(&notification.tenant_id)
        .bind(&notification.recipient_id)
        .bind(&notification.notification_id)
        .bind(local_midnight)
        .bind(now)
        .fetch_one(&mut *transaction)
        .await?;
        if sent_today >= cap {
            return Ok(Decision::Suppress(format!(
                "the daily cap of {cap} notifications was reached"
            )));
        }
        if notification.channel.is_none() {
            let wanted = if preferences.channels.is_empty() {
                Channel::ALL.to_vec()
            } else {
                preferences.channels.clone()
            };
            let usable = wanted.into_iter().find_map(|channel| {
                let configured = match channel {
                    Channel::Chatbot => !channels.chatbot_url.is_empty(),
                    Channel::Email => !channels.smtp_url.is_empty(),
                };
                let address = preferences.address(channel)?;
                configured.then(|| (channel, address.to_owned()))
            });
            let Some((channel, address)) = usable else {
                return Ok(Decision::Fail(
                    "no channel reaches the recipient: their preferences need a chat-bot user \
                     id or an e-mail address for a channel the tenant has set up"
                        .to_owned(),
                ));
            };
            notification.channel = Some(channel.name().to_owned());
            notification.address = Some(address);
            let locale = if preferences.locale.is_empty() {
                tenant_locale
            } else {
                &preferences.locale
            };
            notification.locale = Some(preferences::language(locale).unwrap_or("en").to_owned());
        }
        Ok(Decision::Send)
    }

    /// One attempt of a claimed notification, recorded with its outcome, in a span that
    /// continues the trace of the event that caused it.
    async fn attempt(&self, mut notification: Claimed) -> Result<(), DispatchError> {
        let span = tracing::info_span!(
            "deliver",
            notification_id = notification.notification_id,
            kind = notification.kind,
            channel = notification.channel.as_deref().unwrap_or_default(),
        );
        let carrier = std::collections::HashMap::from([(
            "traceparent".to_owned(),
            notification.traceparent.clone(),
        )]);
        mentorstream_telemetry::propagation::set_parent_from(&span, &carrier);
        let outcome = self.send(&mut notification).instrument(span.clone()).await;
        let now = self.clock.now();
        let attempt = notification.attempts + 1;
        let channel = notification.channel.clone().unwrap_or_default();
        let (code, error) = match &outcome {
            Outcome::Delivered { code } => (*code, String::new()),
            Outcome::Transient { code, error, .. } | Outcome::Permanent { code, error } => {
                (*code, error.clone())
            }
        };
        let mut transaction = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO attempts (notification_id, attempt, at, channel, response_code, error) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&notification.notification_id)
        .bind(attempt)
        .bind(now)
        .bind(&channel)
        .bind(i32::from(code))
        .bind(&error)
        .execute(&mut *transaction)
        .await?;
        let (status, next_attempt_at, reason) = match outcome {
            Outcome::Delivered { .. } => ("delivered", now, String::new()),
            Outcome::Permanent { error, .. } => ("failed", now, error),
            Outcome::Transient { error, .. }
                if attempt - notification.attempts_before_retry
                    >= i32::try_from(self.config.max_attempts).unwrap_or(i32::MAX) =>
            {
                (
                    "failed",
                    now,
                    format!(
                        "gave up after {} attempts: {error}",
                        attempt - notification.attempts_before_retry
                    ),
                )
            }
            Outcome::Transient {
                error, retry_after, ..
            } => {
                let wait = retry_after
                    .unwrap_or_else(|| self.backoff(attempt))
                    .min(self.config.retry_max);
                (
                    "pending",
                    now + TimeDelta::from_std(wait).unwrap_or(TimeDelta::minutes(15)),
                    format!("attempt {attempt} failed, retrying: {error}"),
                )
            }
        };
        sqlx::query(
            "UPDATE notifications SET status = $2, attempts = $3, next_attempt_at = $4, \
                 status_reason = $5, lease_until = NULL, subject = $6, body = $7, \
                 delivered_at = CASE WHEN $2 = 'delivered' THEN $8 END \
             WHERE notification_id = $1",
        )
        .bind(&notification.notification_id)
        .bind(status)
        .bind(attempt)
        .bind(next_attempt_at)
        .bind(&reason)
        .bind(&notification.subject)
        .bind(&notification.body)
        .bind(now)
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        crate::metrics::attempt(&channel, status);
        tracing::info!(
            parent: &span,
            notification_id = notification.notification_id,
            tenant_id = notification.tenant_id,
            recipient_id = notification.recipient_id,
            kind = notification.kind,
            channel,
            attempt,
            response_code = code,
            status,
            "notification attempt"
        );
        Ok(())
    }

    /// Renders `notification` if this is its first attempt, then sends it.
    async fn send(&self, notification: &mut Claimed) -> Outcome {
        if notification.subject.is_none() {
            match self.render(notification).await {
                Ok((subject, body)) => {
                    notification.subject = Some(subject);
                    notification.body = Some(body);
                }
                Err(outcome) => return outcome,
            }
        }
        let subject = notification.subject.as_deref().unwrap_or_default();
        let body = notification.body.as_deref().unwrap_or_default();
        let address = notification.address.as_deref().unwrap_or_default();
        let channels = match self.tenants.channels(&notification.tenant_id).await {
            Ok(channels) => channels,
            Err(error) => {
                return Outcome::Transient {
                    code: 0,
                    error: format!("cannot read the tenant's channels: {error}"),
                    retry_after: None,
                };
            }
        };
        match notification.channel.as_deref().and_then(Channel::from_name) {
            Some(Channel::Chatbot) => {
                let locale = notification.locale.as_deref().unwrap_or("en");
                let actions = self.buttons.of(
                    ForMessage {
                        notification_id: &notification.notification_id,
                        tenant_id: &notification.tenant_id,
                        recipient_id: &notification.recipient_id,
                        kind: Kind::from_name(&notification.kind),
                        params: &notification.params,
                        locale,
                    },
                    self.clock.now(),
                );
                self.webhook
                    .send(
                        &channels.chatbot_url,
                        &channels.chatbot_secret,
                        self.clock.now().timestamp(),
                        &WebhookMessage {
                            notification_id: &notification.notification_id,
                            tenant_id: &notification.tenant_id,
                            recipient_id: &notification.recipient_id,
                            chatbot_user_id: address,
                            category: &notification.category,
                            locale,
                            subject,
                            text: body,
                            actions: &actions,
                        },
                    )
                    .await
            }
            Some(Channel::Email) => {
                self.mailer
                    .send(
                        &channels.smtp_url,
                        &Email {
                            notification_id: &notification.notification_id,
                            from: &channels.email_from,
                            to: address,
                            subject,
                            body,
                        },
                    )
                    .await
            }
            None => Outcome::Permanent {
                code: 0,
                error: format!("unknown channel {:?}", notification.channel),
            },
        }
    }

    /// The subject and body in the recipient's language, times in their time zone. A digest
    /// reads its group's numbers first; KpiService not answering is worth a retry.
    async fn render(&self, notification: &Claimed) -> Result<(String, String), Outcome> {
        let kind = Kind::from_name(&notification.kind).ok_or_else(|| Outcome::Permanent {
            code: 0,
            error: format!("unknown kind `{}`", notification.kind),
        })?;
        let time_zone = notification.time_zone.unwrap_or(Tz::UTC);
        let mut values = notification.params.clone();
        if kind == Kind::WeeklyDigest {
            let week_start = values["week_start"]
                .as_str()
                .and_then(|day| day.parse().ok())
                .ok_or_else(|| Outcome::Permanent {
                    code: 0,
                    error: "a digest without its week".to_owned(),
                })?;
            let group_id = values["group_id"].as_str().unwrap_or_default().to_owned();
            values = self
                .kpi
                .group_week(&notification.tenant_id, &group_id, week_start)
                .await
                .map_err(|error| Outcome::Transient {
                    code: 0,
                    error: format!("cannot read the group's KPIs: {error}"),
                    retry_after: None,
                })?;
        }
        localize(&mut values, time_zone);
        let language = notification.locale.as_deref().unwrap_or("en");
        let rendered = self
            .templates
            .render(kind, language, &values)
            .map_err(|error| Outcome::Permanent {
                code: 0,
                error: error.to_string(),
            })?;
        Ok((rendered.subject, rendered.body))
    }

    /// The wait before attempt `attempt + 1`: `retry_base` doubled per attempt, capped at
    /// `retry_max`, then a random half of it taken off so retries of many spread out.
    fn backoff(&self, attempt: i32) -> Duration {
        let doubling = 2u32.saturating_pow(u32::try_from(attempt - 1).unwrap_or(0).min(30));
        let full = self
            .config
            .retry_base
            .saturating_mul(doubling)
            .min(self.config.retry_max);
        full.mul_f64(rand::rng().random_range(0.5..=1.0))
    }
}

/// Ends a notification without sending it.
async fn finish(
    transaction: &mut sqlx::PgConnection,
    notification_id: &str,
    status: &str,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE notifications SET status = $2, status_reason = $3, lease_until = NULL \
         WHERE notification_id = $1",
    )
    .bind(notification_id)
    .bind(status)
    .bind(reason)
    .execute(transaction)
    .await?;
    Ok(())
}

/// Adds `<name>_local` ("2026-11-28 10:00" in `time_zone`) for every RFC 3339 time among the
/// values, and `time_zone` itself.
fn localize(values: &mut Value, time_zone: Tz) {
    let Some(object) = values.as_object_mut() else {
        return;
    };
    let local: Vec<(String, String)> = object
        .iter()
        .filter_map(|(name, value)| {
            let at = DateTime::parse_from_rfc3339(value.as_str()?).ok()?;
            Some((
                format!("{name}_local"),
                at.with_timezone(&time_zone)
                    .format("%Y-%m-%d %H:%M")
                    .to_string(),
            ))
        })
        .collect();
    for (name, value) in local {
        object.insert(name, Value::String(value));
    }
    object.insert("time_zone".to_owned(), json!(time_zone.name()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_shown_in_the_recipient_zone() {
        let mut values = json!({"starts_at": "2026-11-28T07:00:00+00:00", "topic": "x"});
        localize(&mut values, chrono_tz::Asia::Yekaterinburg);
        assert_eq!(
            values,
            json!({
                "starts_at": "2026-11-28T07:00:00+00:00",
                "starts_at_local": "2026-11-28 12:00",
                "topic": "x",
                "time_zone": "Asia/Yekaterinburg",
            })
        );
    }
}
