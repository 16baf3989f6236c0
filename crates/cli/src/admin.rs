//! `mentorstream admin`: migrations, tenants and API keys.

use clap::Subcommand;
use mentorstream_config::{Config, ExposeSecret};
use mentorstream_tenancy::{NewTenant, Scopes, Tenants};

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Apply the control database migrations.
    Migrate,
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
    /// Revoke an API key by its id.
    RevokeKey {
        #[arg(long)]
        key_id: String,
    },
    /// List tenants.
    ListTenants,
}

pub async fn run(config: &Config, command: AdminCommand) -> anyhow::Result<()> {
    let tenants = Tenants::connect(config.postgres.url.expose_secret(), 2).await?;
    match command {
        AdminCommand::Migrate => {
            tenants.migrate().await?;
            println!("control database is up to date");
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
        AdminCommand::RevokeKey { key_id } => {
            if tenants.revoke_key(&key_id).await? {
                println!("revoked key {key_id}");
            } else {
                anyhow::bail!("no active key with id {key_id}");
            }
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
