//! `mentorstream admin`: migrations, topics, tenants and API keys.

use anyhow::Context as _;
use clap::Subcommand;
use mentorstream_config::{Config, ExposeSecret};
use mentorstream_tenancy::{NewTenant, Scopes, TenantChannels, Tenants};

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Apply the migrations of the control, mentorship and notifier databases (the services
    /// also migrate their own at start; a deployment runs this first, once).
    Migrate,
    /// Create every Kafka topic that is missing, with its partitions, retention or compaction
    /// (and its dead-letter twin).
    CreateTopics,
    /// Create a tenant (one MLM company).
    CreateTenant {
        #[arg(long)]
        name: String,
        /// IANA time zone; all day, week and month windows are in it.
        #[arg(long)]
        timezone: String,
        /// Default locale of the tenant's partners.
        #[arg(long, default_value = "en")]
        locale: String,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Create an API key. The key is printed once and never stored.
    CreateKey {
        /// Tenant id or name.
        #[arg(long)]
        tenant: String,
        /// Comma-separated: ingest, read, write, admin.
        #[arg(long)]
        scopes: Scopes,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Set where a tenant's notifications go (replaces what was set; an omitted channel is
    /// turned off).
    SetChannels {
        /// Tenant id or name.
        #[arg(long)]
        tenant: String,
        /// The chat-bot gateway's webhook URL (http:// or https://).
        #[arg(long, default_value = "")]
        chatbot_url: String,
        /// Key of the webhooks' HMAC-SHA256 signature, at least 16 characters.
        #[arg(
            long,
            env = "MENTORSTREAM_CHATBOT_SECRET",
            hide_env_values = true,
            default_value = ""
        )]
        chatbot_secret: String,
        /// SMTP server, e.g. smtps://user:password@mail.example.com or smtp://host:2525.
        #[arg(
            long,
            env = "MENTORSTREAM_SMTP_URL",
            hide_env_values = true,
            default_value = ""
        )]
        smtp_url: String,
        /// Sender of e-mails, e.g. "Mentors <mentors@example.com>".
        #[arg(long, default_value = "")]
        email_from: String,
        /// Most notifications per partner and local day, unless a partner chose fewer.
        #[arg(long, default_value_t = 10)]
        daily_cap: i32,
    },
    /// Set the origins allowed to embed the tenant's dashboard pages in an iframe (replaces
    /// what was set; none: the pages cannot be framed).
    SetFrameAncestors {
        /// Tenant id or name.
        #[arg(long)]
        tenant: String,
        /// Origins such as https://office.example.com (http:// only for localhost).
        origins: Vec<String>,
    },
    /// Revoke an API key by its id.
    RevokeKey {
        #[arg(long)]
        key_id: String,
    },
    /// List tenants.
    ListTenants,
    /// Erase a partner's personal data from mentorship and the notifier (names, contacts,
    /// free text) and destroy the key that seals it on the activity topic; their numbers
    /// stay, under their pseudonymous id (docs/operations.md).
    ErasePartner {
        /// Tenant id or name.
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        partner: String,
        /// Print what was erased as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Re-seal every tenant's channel secrets with the first key of secrets.keys (after putting
    /// a new key first; then the old one can go), sealing those still stored in clear.
    RotateSecrets,
}

pub async fn run(config: &Config, command: AdminCommand) -> anyhow::Result<()> {
    let tenants = match command {
        // The one command that needs no database (a topic Job has no database credentials).
        AdminCommand::CreateTopics => return create_topics(config).await,
        _ => Tenants::connect(config.postgres.url.expose_secret(), 2)
            .await?
            .with_sealer(
                mentorstream_tenancy::sealed::Sealer::from_keys(
                    config.secrets.keys.expose_secret(),
                )
                .context("secrets.keys")?,
            ),
    };
    match command {
        AdminCommand::CreateTopics => create_topics(config).await?,
        AdminCommand::Migrate => {
            tenants.migrate().await?;
            println!("control database is up to date");
            let mentorship = mentorstream_mentorship::db::connect(
                config.mentorship.database_url.expose_secret(),
            )?;
            mentorstream_mentorship::db::migrate(&mentorship).await?;
            println!("mentorship database is up to date");
            let notifier =
                mentorstream_notifier::connect(config.notifier.database_url.expose_secret())?;
            mentorstream_notifier::migrate(&notifier).await?;
            println!("notifier database is up to date");
        }
        AdminCommand::CreateTenant {
            name,
            timezone,
            locale,
            json,
        } => {
            let tenant = tenants
                .create_tenant(NewTenant {
                    name,
                    time_zone: timezone,
                    default_locale: locale,
                })
                .await?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "tenant_id": tenant.tenant_id,
                        "name": tenant.name,
                        "time_zone": tenant.time_zone.name(),
                    })
                );
            } else {
                println!(
                    "created tenant {} ({}, {})",
                    tenant.tenant_id,
                    tenant.name,
                    tenant.time_zone.name()
                );
            }
        }
        AdminCommand::CreateKey {
            tenant,
            scopes,
            json,
        } => {
            let issued = tenants.create_key(&tenant, scopes).await?;
            if json {
                println!("{}", serde_json::to_string(&issued)?);
            } else {
                println!(
                    "created key {} for tenant {} with scopes {}\n\n{}\n\nThis key is shown only once.",
                    issued.key_id, issued.tenant_id, issued.scopes, issued.api_key
                );
            }
        }
        AdminCommand::SetChannels {
            tenant,
            chatbot_url,
            chatbot_secret,
            smtp_url,
            email_from,
            daily_cap,
        } => {
            let channels = TenantChannels {
                chatbot_url,
                chatbot_secret,
                smtp_url,
                email_from,
                daily_cap,
            };
            tenants.set_channels(&tenant, &channels).await?;
            let or_off = |value: &str| {
                if value.is_empty() {
                    "off".to_owned()
                } else {
                    value.to_owned()
                }
            };
            println!(
                "channels of {tenant}: chat-bot {}, e-mail {} (from {}), daily cap {}",
                or_off(&channels.chatbot_url),
                if channels.smtp_url.is_empty() {
                    "off"
                } else {
                    "on"
                },
                or_off(&channels.email_from),
                channels.daily_cap
            );
        }
        AdminCommand::SetFrameAncestors { tenant, origins } => {
            tenants.set_frame_ancestors(&tenant, &origins).await?;
            if origins.is_empty() {
                println!("the dashboard pages of {tenant} cannot be framed");
            } else {
                println!(
                    "the dashboard pages of {tenant} may be framed by {}",
                    origins.join(" ")
                );
            }
        }
        AdminCommand::RevokeKey { key_id } => {
            if tenants.revoke_key(&key_id).await? {
                println!("revoked key {key_id}");
            } else {
                anyhow::bail!("no active key with id {key_id}");
            }
        }
        AdminCommand::ErasePartner {
            tenant,
            partner,
            json,
        } => {
            let tenant = tenants.tenant(&tenant).await?;
            // First the key that seals their personal fields on the activity topic: from here
            // on no copy of those records can be read, whatever happens next.
            let key_destroyed = tenants
                .destroy_partner_data_key(&tenant.tenant_id, &partner)
                .await?;
            let mentorship = sqlx::PgPool::connect(config.mentorship.database_url.expose_secret())
                .await
                .context("mentorship.database_url")?;
            let notifier = sqlx::PgPool::connect(config.notifier.database_url.expose_secret())
                .await
                .context("notifier.database_url")?;
            let in_mentorship = mentorstream_mentorship::erase::erase_partner(
                &mentorship,
                &tenant.tenant_id,
                &partner,
            )
            .await?;
            let in_notifier =
                mentorstream_notifier::erase::erase_partner(&notifier, &tenant.tenant_id, &partner)
                    .await?;
            let erased = serde_json::json!({
                "tenant_id": tenant.tenant_id,
                "partner_id": partner,
                "activity_topic": { "data_key_destroyed": key_destroyed },
                "mentorship": in_mentorship,
                "notifier": in_notifier,
            });
            if json {
                println!("{erased}");
            } else {
                println!(
                    "erased the personal data of {partner} ({}): {erased}",
                    tenant.name
                );
            }
        }
        AdminCommand::RotateSecrets => {
            if config.secrets.keys.expose_secret().trim().is_empty() {
                anyhow::bail!("secrets.keys is empty: there is no key to seal with");
            }
            let rewritten = tenants.reseal_secrets().await?;
            println!("{rewritten} secrets sealed with the first key of secrets.keys");
        }
        AdminCommand::ListTenants => {
            for tenant in tenants.list_tenants().await? {
                println!(
                    "{}\t{}\t{}",
                    tenant.tenant_id,
                    tenant.name,
                    tenant.time_zone.name()
                );
            }
        }
    }
    Ok(())
}

async fn create_topics(config: &Config) -> anyhow::Result<()> {
    let specs = mentorstream_kafka::admin::all_topics(&config.kafka.topics);
    mentorstream_kafka::admin::ensure_topics(&config.kafka, &specs).await?;
    for spec in &specs {
        println!(
            "{} ({} partitions, {}) and {} are present",
            spec.name,
            config.kafka.partitions,
            spec.retention,
            mentorstream_kafka::dlq_topic(&spec.name)
        );
    }
    Ok(())
}
