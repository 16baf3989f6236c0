//! `mentorstream dashboard link`: a signed dashboard link for one partner, as the MLM
//! platform would ask for it (DashboardService.CreateDashboardLink).

use std::time::Duration;

use clap::{Args, ValueEnum};
use mentorstream_config::Config;
use mentorstream_proto::mentorship::v1::dashboard_service_client::DashboardServiceClient;
use mentorstream_proto::mentorship::v1::{CreateDashboardLinkRequest, DashboardRole};
use tonic::Code;

/// How long `link` waits for a partner the mentorship service has not heard of yet (a
/// simulation that has just started).
const WAIT_FOR_PARTNER: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Role {
    Partner,
    Mentor,
    Leader,
}

#[derive(Debug, Args)]
pub struct LinkArgs {
    /// An API key with the read scope.
    #[arg(long, env = "MENTORSTREAM_API_KEY", hide_env_values = true)]
    api_key: String,
    /// MentorshipService, e.g. http://127.0.0.1:50052 (default: the configured listen address).
    #[arg(long)]
    endpoint: Option<String>,
    #[arg(long)]
    partner: String,
    #[arg(long, value_enum, default_value = "partner")]
    role: Role,
    /// How long the link works, e.g. 8h (default: mentorship.dashboard_link_valid_for).
    #[arg(long, value_parser = humantime::parse_duration)]
    valid_for: Option<Duration>,
    /// ru or en (default: the partner's own language).
    #[arg(long, default_value = "")]
    locale: String,
    /// Print only the page of the role (the team page for a leader, the mentor page for a
    /// mentor), for scripts.
    #[arg(long)]
    page_only: bool,
}

pub async fn link(config: &Config, args: LinkArgs) -> anyhow::Result<()> {
    let endpoint = args
        .endpoint
        .clone()
        .unwrap_or_else(|| format!("http://{}", config.mentorship.grpc_listen));
    let channel = tonic::transport::Endpoint::from_shared(endpoint)?
        .connect()
        .await?;
    let mut client = DashboardServiceClient::new(channel);
    let deadline = tokio::time::Instant::now() + WAIT_FOR_PARTNER;
    let answer = loop {
        let mut request = tonic::Request::new(CreateDashboardLinkRequest {
            partner_id: args.partner.clone(),
            role: match args.role {
                Role::Partner => DashboardRole::Partner,
                Role::Mentor => DashboardRole::Mentor,
                Role::Leader => DashboardRole::Leader,
            }
            .into(),
            valid_for: args
                .valid_for
                .map(prost_types::Duration::try_from)
                .transpose()?,
            locale: args.locale.clone(),
        });
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {}", args.api_key).parse()?);
        match client.create_dashboard_link(request).await {
            Ok(answer) => break answer.into_inner(),
            Err(status)
                if status.code() == Code::NotFound && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(status) => anyhow::bail!("{}: {}", status.code(), status.message()),
        }
    };
    if args.page_only {
        let page = match args.role {
            Role::Partner => &answer.partner_url,
            Role::Mentor => &answer.mentor_url,
            Role::Leader => &answer.team_url,
        };
        println!("{page}");
        return Ok(());
    }
    println!("partner page  {}", answer.partner_url);
    if !answer.mentor_url.is_empty() {
        println!("mentor page   {}", answer.mentor_url);
    }
    if !answer.team_url.is_empty() {
        println!("team page     {}", answer.team_url);
    }
    Ok(())
}
