//! Erasing a partner's personal data from mentorship (`mentorstream admin erase-partner`,
//! docs/operations.md): their name, locale and time zone in the partner read model, the
//! comments they wrote on sessions, the notes of sessions they attended, their plan's goal
//! descriptions. What is left is pseudonymous — the company's partner id, the sponsor tree,
//! dates, ranks, attendance, ratings — so every number and every other partner's data stays
//! right. The partner is remembered as erased, so a redelivered enrolment writes nothing back.

use sqlx::PgPool;

/// Rows changed, by what.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Erased {
    pub partner: u64,
    pub comments: u64,
    pub notes: u64,
    pub goals: u64,
}

/// Erases `partner_id`'s personal data of `tenant_id`, in one transaction.
pub async fn erase_partner(
    pool: &PgPool,
    tenant_id: &str,
    partner_id: &str,
) -> Result<Erased, sqlx::Error> {
    let mut transaction = pool.begin().await?;
    sqlx::query(
        "INSERT INTO erased_partners (tenant_id, partner_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(tenant_id)
    .bind(partner_id)
    .execute(&mut *transaction)
    .await?;
    let run = |sql: &'static str| sqlx::query(sql).bind(tenant_id).bind(partner_id);
    let partner = run(
        "UPDATE partners SET display_name = '', locale = '', time_zone = '' \
                       WHERE tenant_id = $1 AND partner_id = $2",
    )
    .execute(&mut *transaction)
    .await?
    .rows_affected();
    let comments = run(
        "UPDATE feedback SET comment = '' WHERE tenant_id = $1 AND mentee_id = $2 \
                        AND comment <> ''",
    )
    .execute(&mut *transaction)
    .await?
    .rows_affected();
    let notes = run(
        "UPDATE sessions s SET notes = '' WHERE s.tenant_id = $1 AND s.notes <> '' \
                     AND (s.mentor_id = $2 OR EXISTS (SELECT 1 FROM session_mentees m \
                          WHERE m.tenant_id = s.tenant_id AND m.session_id = s.session_id \
                            AND m.mentee_id = $2))",
    )
    .execute(&mut *transaction)
    .await?
    .rows_affected();
    let goals = run("UPDATE goals g SET description = '' FROM plans p \
                     WHERE p.tenant_id = g.tenant_id AND p.plan_id = g.plan_id \
                       AND g.tenant_id = $1 AND p.mentee_id = $2 AND g.description <> ''")
    .execute(&mut *transaction)
    .await?
    .rows_affected();
    transaction.commit().await?;
    Ok(Erased {
        partner,
        comments,
        notes,
        goals,
    })
}

/// Blanks again what a redelivered enrolment of an erased partner wrote (the read model calls
/// it after each enrolment).
pub async fn keep_erased(
    pool: &PgPool,
    tenant_id: &str,
    partner_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE partners SET display_name = '', locale = '', time_zone = '' \
         WHERE tenant_id = $1 AND partner_id = $2 AND (display_name <> '' OR locale <> '' \
           OR time_zone <> '') \
           AND EXISTS (SELECT 1 FROM erased_partners e \
                       WHERE e.tenant_id = $1 AND e.partner_id = $2)",
    )
    .bind(tenant_id)
    .bind(partner_id)
    .execute(pool)
    .await?;
    Ok(())
}
