//! Erasing a partner's personal data from the notifier (`mentorstream admin erase-partner`):
//! their preferences (chat-bot id, e-mail address, locale, time zone, quiet hours) and what
//! their notifications carried — address, rendered subject and body, template values — with
//! the attempts (whose errors may quote the address). Each notification keeps its status and
//! cause, so nothing is sent again; pending ones are cancelled, as there is nobody to send to.

use sqlx::PgPool;

/// Rows changed, by what.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Erased {
    pub preferences: u64,
    pub notifications: u64,
    pub attempts: u64,
}

/// Erases `partner_id`'s personal data of `tenant_id`, in one transaction.
pub async fn erase_partner(
    pool: &PgPool,
    tenant_id: &str,
    partner_id: &str,
) -> Result<Erased, sqlx::Error> {
    let mut transaction = pool.begin().await?;
    let preferences =
        sqlx::query("DELETE FROM preferences WHERE tenant_id = $1 AND partner_id = $2")
            .bind(tenant_id)
            .bind(partner_id)
            .execute(&mut *transaction)
            .await?
            .rows_affected();
    let attempts = sqlx::query(
        "DELETE FROM attempts a USING notifications n WHERE a.notification_id = n.notification_id \
           AND n.tenant_id = $1 AND n.recipient_id = $2",
    )
    .bind(tenant_id)
    .bind(partner_id)
    .execute(&mut *transaction)
    .await?
    .rows_affected();
    let notifications = sqlx::query(
        "UPDATE notifications SET address = NULL, subject = NULL, body = NULL, params = '{}', \
             attempts = 0, attempts_before_retry = 0, \
             status = CASE WHEN status = 'pending' THEN 'cancelled' ELSE status END, \
             status_reason = 'the partner''s personal data was erased', lease_until = NULL \
         WHERE tenant_id = $1 AND recipient_id = $2",
    )
    .bind(tenant_id)
    .bind(partner_id)
    .execute(&mut *transaction)
    .await?
    .rows_affected();
    transaction.commit().await?;
    Ok(Erased {
        preferences,
        notifications,
        attempts,
    })
}
