//! Where a tenant's notifications go (docs/spec.md §4: a tenant has a chat-bot gateway URL and
//! secret and SMTP settings). The notifier must use the secrets — the gateway secret signs
//! webhooks, the SMTP URL carries the server's credentials — so they are stored sealed
//! (crate::sealed) when `secrets.keys` is set, opened on reading; in clear otherwise.

use crate::{TenancyError, Tenants};

/// A tenant's notification channels. An empty URL means the channel is not set up.
#[derive(Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct TenantChannels {
    /// The chat-bot gateway's webhook, `http://` or `https://`.
    pub chatbot_url: String,
    /// Key of the HMAC-SHA256 signature of every webhook.
    pub chatbot_secret: String,
    /// `smtp://host:port`, `smtps://user:password@host` or with `?tls=required`.
    pub smtp_url: String,
    /// The `From` of e-mails, e.g. `Mentorstream <mentors@example.com>`.
    pub email_from: String,
    /// Most notifications per partner and local day, unless a partner chose fewer.
    pub daily_cap: i32,
}

impl std::fmt::Debug for TenantChannels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantChannels")
            .field("chatbot_url", &self.chatbot_url)
            .field("chatbot_secret", &"[redacted]")
            .field("smtp_url", &"[redacted]")
            .field("email_from", &self.email_from)
            .field("daily_cap", &self.daily_cap)
            .finish()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChannelsError {
    #[error("chatbot_url must start with http:// or https://, got `{0}`")]
    ChatbotUrl(String),
    #[error("a chat-bot gateway needs a secret of at least 16 characters to sign webhooks")]
    ChatbotSecret,
    #[error("a chat-bot secret must not begin with `v1:` (the mark of a sealed value)")]
    SealedLookalike,
    #[error("smtp_url must start with smtp:// or smtps://")]
    SmtpUrl,
    #[error("e-mail needs a sender address (email_from) with an @, got `{0}`")]
    EmailFrom(String),
    #[error("daily_cap must be at least 1, got {0}")]
    DailyCap(i32),
}

impl TenantChannels {
    pub fn validate(&self) -> Result<(), ChannelsError> {
        if !self.chatbot_url.is_empty() {
            if !(self.chatbot_url.starts_with("http://")
                || self.chatbot_url.starts_with("https://"))
            {
                return Err(ChannelsError::ChatbotUrl(self.chatbot_url.clone()));
            }
            if self.chatbot_secret.chars().count() < 16 {
                return Err(ChannelsError::ChatbotSecret);
            }
            if self.chatbot_secret.starts_with("v1:") {
                return Err(ChannelsError::SealedLookalike);
            }
        }
        if !self.smtp_url.is_empty() {
            if !(self.smtp_url.starts_with("smtp://") || self.smtp_url.starts_with("smtps://")) {
                return Err(ChannelsError::SmtpUrl);
            }
            if !self.email_from.contains('@') {
                return Err(ChannelsError::EmailFrom(self.email_from.clone()));
            }
        }
        if self.daily_cap < 1 {
            return Err(ChannelsError::DailyCap(self.daily_cap));
        }
        Ok(())
    }
}

/// What binds a sealed secret to its row: the tenant and the field.
fn context(tenant_id: &str, field: &str) -> String {
    format!("{tenant_id}/{field}")
}

impl Tenants {
    /// The tenant's channels, secrets opened (crate::sealed).
    pub async fn channels(&self, tenant_id: &str) -> Result<TenantChannels, TenancyError> {
        let mut channels: TenantChannels = sqlx::query_as(
            "SELECT chatbot_url, chatbot_secret, smtp_url, email_from, daily_cap \
             FROM tenants WHERE tenant_id = $1",
        )
        .bind(tenant_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| TenancyError::UnknownTenant(tenant_id.to_owned()))?;
        let sealer = self.sealer.as_deref();
        channels.chatbot_secret = crate::sealed::open_with(
            sealer,
            &channels.chatbot_secret,
            &context(tenant_id, "chatbot_secret"),
        )?;
        channels.smtp_url =
            crate::sealed::open_with(sealer, &channels.smtp_url, &context(tenant_id, "smtp_url"))?;
        Ok(channels)
    }

    /// `value` as stored: sealed when keys are configured (and not empty).
    fn stored(&self, value: &str, tenant_id: &str, field: &str) -> Result<String, TenancyError> {
        match &self.sealer {
            Some(sealer) if !value.is_empty() => {
                Ok(sealer.seal(value, &context(tenant_id, field))?)
            }
            _ => Ok(value.to_owned()),
        }
    }

    /// Re-seals every tenant's secrets with the first key of `secrets.keys` (rotation), and
    /// seals those stored in clear: how many values it rewrote.
    pub async fn reseal_secrets(&self) -> Result<u64, TenancyError> {
        let Some(sealer) = self.sealer.clone() else {
            return Ok(0);
        };
        let rows: Vec<(String, String, String)> =
            sqlx::query_as("SELECT tenant_id, chatbot_secret, smtp_url FROM tenants")
                .fetch_all(&self.pool)
                .await?;
        let mut rewritten = 0;
        let mut failed = Vec::new();
        for (tenant_id, chatbot_secret, smtp_url) in rows {
            for (field, stored) in [("chatbot_secret", chatbot_secret), ("smtp_url", smtp_url)] {
                if stored.is_empty() || sealer.is_current(&stored) {
                    continue;
                }
                let plain = match sealer.open(&stored, &context(&tenant_id, field)) {
                    Ok(plain) => plain,
                    Err(error) => {
                        // The others are still re-sealed; this one is named.
                        tracing::error!(tenant_id, field, %error, "cannot re-seal a secret");
                        failed.push(format!("{tenant_id}/{field}: {error}"));
                        continue;
                    }
                };
                let sealed = sealer.seal(&plain, &context(&tenant_id, field))?;
                // Only if nobody changed it meanwhile.
                let updated = sqlx::query(&format!(
                    "UPDATE tenants SET {field} = $3 WHERE tenant_id = $1 AND {field} = $2"
                ))
                .bind(&tenant_id)
                .bind(&stored)
                .bind(&sealed)
                .execute(&self.pool)
                .await?;
                rewritten += updated.rows_affected();
            }
        }
        if failed.is_empty() {
            Ok(rewritten)
        } else {
            Err(TenancyError::Reseal { rewritten, failed })
        }
    }

    /// Replaces the channels of the tenant with this id or name, after checking them.
    pub async fn set_channels(
        &self,
        tenant_id_or_name: &str,
        channels: &TenantChannels,
    ) -> Result<(), TenancyError> {
        channels.validate()?;
        let tenant = self.tenant(tenant_id_or_name).await?;
        sqlx::query(
            "UPDATE tenants SET chatbot_url = $2, chatbot_secret = $3, smtp_url = $4, \
                 email_from = $5, daily_cap = $6 WHERE tenant_id = $1",
        )
        .bind(&tenant.tenant_id)
        .bind(&channels.chatbot_url)
        .bind(self.stored(
            &channels.chatbot_secret,
            &tenant.tenant_id,
            "chatbot_secret",
        )?)
        .bind(self.stored(&channels.smtp_url, &tenant.tenant_id, "smtp_url")?)
        .bind(&channels.email_from)
        .bind(channels.daily_cap)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channels() -> TenantChannels {
        TenantChannels {
            chatbot_url: "https://bot.example.com/hook".into(),
            chatbot_secret: "0123456789abcdef".into(),
            smtp_url: "smtps://user:pass@mail.example.com".into(),
            email_from: "Mentors <mentors@example.com>".into(),
            daily_cap: 10,
        }
    }

    #[test]
    fn complete_channels_are_accepted() {
        assert_eq!(channels().validate(), Ok(()));
        assert_eq!(
            TenantChannels {
                daily_cap: 1,
                ..TenantChannels::default()
            }
            .validate(),
            Ok(())
        );
    }

    #[test]
    fn each_broken_setting_is_named() {
        let broken = [
            (
                TenantChannels {
                    chatbot_url: "ftp://bot".into(),
                    ..channels()
                },
                ChannelsError::ChatbotUrl("ftp://bot".into()),
            ),
            (
                TenantChannels {
                    chatbot_secret: "short".into(),
                    ..channels()
                },
                ChannelsError::ChatbotSecret,
            ),
            (
                TenantChannels {
                    smtp_url: "mail.example.com".into(),
                    ..channels()
                },
                ChannelsError::SmtpUrl,
            ),
            (
                TenantChannels {
                    email_from: "mentors".into(),
                    ..channels()
                },
                ChannelsError::EmailFrom("mentors".into()),
            ),
            (
                TenantChannels {
                    daily_cap: 0,
                    ..channels()
                },
                ChannelsError::DailyCap(0),
            ),
        ];
        for (channels, error) in broken {
            assert_eq!(channels.validate(), Err(error));
        }
    }
}
