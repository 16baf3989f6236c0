//! `mentorstream kpi scorecard | leaderboard | journey | dashboard`: KpiService from a
//! terminal.

use std::time::Duration;

use clap::{Args, Subcommand};
use mentorstream_config::Config;
use mentorstream_proto::kpi::v1::kpi_service_client::KpiServiceClient;
use mentorstream_proto::kpi::v1::{
    GetJourneyRequest, GetJourneyResponse, GetLeaderboardRequest, GetScorecardRequest,
    GetScorecardResponse, Metric, MetricValue, Subject, SubjectKind, Window, WindowKind,
    metric_value,
};
use tonic::transport::Channel;

#[derive(Debug, Args)]
pub struct Connection {
    /// An API key with the read scope.
    #[arg(long, env = "MENTORSTREAM_API_KEY", hide_env_values = true)]
    api_key: String,
    /// KpiService, e.g. http://127.0.0.1:50053 (default: the configured listen address).
    #[arg(long)]
    endpoint: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Query {
    /// Every metric of one subject in one window.
    Scorecard {
        #[command(flatten)]
        connection: Connection,
        /// partner:<id>, group:<id>, team:<partner id> or tenant.
        #[arg(long, value_parser = subject)]
        subject: Subject,
        /// day, week, month, 7d, 30d, 90d or lifetime (the current one).
        #[arg(long, default_value = "week", value_parser = window)]
        window: WindowKind,
    },
    /// Partners or groups ranked by one metric.
    Leaderboard {
        #[command(flatten)]
        connection: Connection,
        /// e.g. sales_volume, recruits, sessions_completed, feedback_avg.
        #[arg(long, default_value = "sales_volume", value_parser = metric)]
        metric: Metric,
        #[arg(long, default_value = "month", value_parser = window)]
        window: WindowKind,
        /// Rank groups instead of partners.
        #[arg(long)]
        groups: bool,
        /// Only within this partner's team.
        #[arg(long)]
        team: Option<String>,
        #[arg(long, default_value_t = 10)]
        limit: u32,
    },
    /// A partner's enrolment, first sale, ranks and mentors.
    Journey {
        #[command(flatten)]
        connection: Connection,
        #[arg(long)]
        partner: String,
    },
    /// A live view, refreshed until Ctrl-C: tenant totals, the busiest group's week and
    /// retention, and a team's leaderboard with each partner's time to first sale.
    Dashboard {
        #[command(flatten)]
        connection: Connection,
        /// The team to rank (default: the partner with the most recruits).
        #[arg(long)]
        team: Option<String>,
        #[arg(long, default_value = "2s", value_parser = humantime_duration)]
        every: Duration,
        /// A line shown under every screen, e.g. "mentor's page: <url>" (repeatable).
        #[arg(long = "footer")]
        footers: Vec<String>,
    },
}

fn humantime_duration(text: &str) -> Result<Duration, String> {
    let seconds = text
        .strip_suffix('s')
        .and_then(|number| number.parse::<f64>().ok())
        .ok_or_else(|| format!("`{text}` is not a duration in seconds such as 2s"))?;
    Ok(Duration::from_secs_f64(seconds))
}

fn subject(text: &str) -> Result<Subject, String> {
    let (kind, id) = text.split_once(':').unwrap_or((text, ""));
    let kind = match kind {
        "partner" => SubjectKind::Partner,
        "group" => SubjectKind::Group,
        "team" => SubjectKind::Team,
        "tenant" => SubjectKind::Tenant,
        other => {
            return Err(format!(
                "`{other}` is not a subject kind: use partner:<id>, group:<id>, team:<id> or tenant"
            ));
        }
    };
    Ok(Subject {
        kind: kind.into(),
        id: id.to_owned(),
        mentor_id: String::new(),
    })
}

fn window(text: &str) -> Result<WindowKind, String> {
    Ok(match text {
        "day" => WindowKind::Day,
        "week" => WindowKind::Week,
        "month" => WindowKind::Month,
        "7d" => WindowKind::Rolling7d,
        "30d" => WindowKind::Rolling30d,
        "90d" => WindowKind::Rolling90d,
        "lifetime" => WindowKind::Lifetime,
        other => {
            return Err(format!(
                "`{other}` is not a window: use day, week, month, 7d, 30d, 90d or lifetime"
            ));
        }
    })
}

fn metric(text: &str) -> Result<Metric, String> {
    Metric::from_str_name(&format!("METRIC_{}", text.to_uppercase()))
        .filter(|metric| *metric != Metric::Unspecified)
        .ok_or_else(|| format!("`{text}` is not a metric, e.g. sales_volume or recruits"))
}

fn metric_name(metric: Metric) -> String {
    metric
        .as_str_name()
        .trim_start_matches("METRIC_")
        .to_lowercase()
}

fn value(value: Option<&MetricValue>) -> String {
    let retention = value.is_some_and(|value| value.metric() == Metric::Retention30d);
    match value.and_then(|value| value.value.as_ref()) {
        Some(metric_value::Value::Count(count)) => count.to_string(),
        Some(metric_value::Value::Decimal(decimal)) => decimal.value.clone(),
        Some(metric_value::Value::Fraction(fraction)) => match fraction.hundredths() {
            Some(percent) if retention => format!(
                "{percent}% ({} of {})",
                fraction.numerator, fraction.denominator
            ),
            Some(hundredths) => format!("{}.{:02}", hundredths / 100, hundredths % 100),
            None => "—".to_owned(),
        },
        _ => "—".to_owned(),
    }
}

struct Kpi {
    client: KpiServiceClient<Channel>,
    authorization: tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
}

impl Kpi {
    fn new(config: &Config, connection: &Connection) -> anyhow::Result<Self> {
        let endpoint = connection
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("http://{}", config.kpi.grpc_listen));
        let channel = Channel::from_shared(endpoint)?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .connect_lazy();
        Ok(Self {
            client: KpiServiceClient::new(channel),
            authorization: format!("Bearer {}", connection.api_key)
                .parse()
                .map_err(|_| anyhow::anyhow!("the API key is not valid ASCII"))?,
        })
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", self.authorization.clone());
        request
    }

    async fn scorecard(
        &self,
        subject: Subject,
        window: WindowKind,
    ) -> anyhow::Result<GetScorecardResponse> {
        Ok(self
            .client
            .clone()
            .get_scorecard(self.request(GetScorecardRequest {
                subject: Some(subject),
                window: Some(Window {
                    kind: window.into(),
                    anchor: None,
                }),
            }))
            .await?
            .into_inner())
    }

    async fn leaderboard(
        &self,
        groups: bool,
        metric: Metric,
        window: WindowKind,
        team: Option<&str>,
        limit: u32,
    ) -> anyhow::Result<Vec<(String, String)>> {
        let board = self
            .client
            .clone()
            .get_leaderboard(
                self.request(GetLeaderboardRequest {
                    entry_kind: if groups {
                        SubjectKind::Group
                    } else {
                        SubjectKind::Partner
                    }
                    .into(),
                    metric: metric.into(),
                    window: Some(Window {
                        kind: window.into(),
                        anchor: None,
                    }),
                    team_root_id: team.unwrap_or_default().to_owned(),
                    page_size: limit,
                    page_token: String::new(),
                }),
            )
            .await?
            .into_inner();
        Ok(board
            .entries
            .iter()
            .map(|entry| {
                (
                    entry
                        .subject
                        .as_ref()
                        .map(|subject| subject.id.clone())
                        .unwrap_or_default(),
                    value(entry.value.as_ref()),
                )
            })
            .collect())
    }

    async fn journey(&self, partner: &str) -> anyhow::Result<GetJourneyResponse> {
        Ok(self
            .client
            .clone()
            .get_journey(self.request(GetJourneyRequest {
                partner_id: partner.to_owned(),
            }))
            .await?
            .into_inner())
    }
}

fn scorecard_lines(scorecard: &GetScorecardResponse) -> Vec<String> {
    scorecard
        .values
        .iter()
        .map(|metric| {
            format!(
                "  {:<20} {}",
                metric_name(metric.metric()),
                value(Some(metric))
            )
        })
        .collect()
}

fn time(timestamp: Option<&prost_types::Timestamp>) -> String {
    timestamp
        .and_then(|time| chrono::DateTime::from_timestamp(time.seconds, 0))
        .map_or_else(
            || "—".to_owned(),
            |time| time.format("%Y-%m-%d %H:%M UTC").to_string(),
        )
}

pub async fn run(config: &Config, query: Query) -> anyhow::Result<()> {
    match query {
        Query::Scorecard {
            connection,
            subject,
            window,
        } => {
            let kpi = Kpi::new(config, &connection)?;
            let scorecard = kpi.scorecard(subject, window).await?;
            println!("as of {}", time(scorecard.as_of.as_ref()));
            for line in scorecard_lines(&scorecard) {
                println!("{line}");
            }
        }
        Query::Leaderboard {
            connection,
            metric,
            window,
            groups,
            team,
            limit,
        } => {
            let kpi = Kpi::new(config, &connection)?;
            let board = kpi
                .leaderboard(groups, metric, window, team.as_deref(), limit)
                .await?;
            for (rank, (id, value)) in board.iter().enumerate() {
                println!("{:>3}. {id:<36} {value}", rank + 1);
            }
        }
        Query::Journey {
            connection,
            partner,
        } => {
            let kpi = Kpi::new(config, &connection)?;
            for line in journey_lines(&kpi.journey(&partner).await?) {
                println!("{line}");
            }
        }
        Query::Dashboard {
            connection,
            team,
            every,
            footers,
        } => {
            let kpi = Kpi::new(config, &connection)?;
            loop {
                let screen = dashboard(&kpi, team.as_deref()).await;
                // Clear the screen and draw from the top.
                print!("\x1b[2J\x1b[H");
                match screen {
                    Ok(lines) => {
                        for line in lines {
                            println!("{line}");
                        }
                    }
                    Err(error) => println!("cannot read KPIs (retrying): {error:#}"),
                }
                if !footers.is_empty() {
                    println!();
                }
                for footer in &footers {
                    println!("{footer}");
                }
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => return Ok(()),
                    () = tokio::time::sleep(every) => {}
                }
            }
        }
    }
    Ok(())
}

fn journey_lines(journey: &GetJourneyResponse) -> Vec<String> {
    let mut lines = vec![
        format!("partner      {}", journey.partner_id),
        format!(
            "sponsor      {}",
            if journey.sponsor_id.is_empty() {
                "—"
            } else {
                &journey.sponsor_id
            }
        ),
        format!("enrolled     {}", time(journey.enrolled_at.as_ref())),
        if journey.has_first_sale {
            format!(
                "first sale   {} ({} days after enrolling)",
                time(journey.first_sale_at.as_ref()),
                journey.days_to_first_sale
            )
        } else {
            "first sale   —".to_owned()
        },
        format!(
            "rank         {} (level {})",
            journey.current_rank_name, journey.current_rank_level
        ),
    ];
    for rank in &journey.ranks {
        lines.push(format!(
            "  reached {} ({}) after {} days",
            rank.rank_name, rank.rank_level, rank.days_to_rank
        ));
    }
    for mentor in &journey.mentors {
        lines.push(format!(
            "  mentored by {} in group {} from {}{}",
            mentor.mentor_id,
            mentor.group_id,
            time(mentor.started_at.as_ref()),
            mentor
                .ended_at
                .as_ref()
                .map_or_else(String::new, |ended| format!(" to {}", time(Some(ended))))
        ));
    }
    lines
}

/// One screen of the dashboard.
async fn dashboard(kpi: &Kpi, team: Option<&str>) -> anyhow::Result<Vec<String>> {
    let tenant = kpi
        .scorecard(
            Subject {
                kind: SubjectKind::Tenant.into(),
                id: String::new(),
                mentor_id: String::new(),
            },
            WindowKind::Lifetime,
        )
        .await?;
    let mut lines = vec![
        format!(
            "Mentorstream — live KPIs (as of {})            Ctrl-C to stop",
            time(tenant.as_of.as_ref())
        ),
        String::new(),
        "Tenant, lifetime".to_owned(),
    ];
    let pick = |card: &GetScorecardResponse, metric: Metric| {
        value(card.values.iter().find(|value| value.metric() == metric))
    };
    lines.push(format!(
        "  recruits {} · sales {} PV in {} orders · sessions {} done, {} missed · modules {}",
        pick(&tenant, Metric::Recruits),
        pick(&tenant, Metric::SalesVolume),
        pick(&tenant, Metric::Orders),
        pick(&tenant, Metric::SessionsCompleted),
        pick(&tenant, Metric::SessionsMissed),
        pick(&tenant, Metric::ModulesCompleted),
    ));
    lines.push(String::new());
    let busiest = kpi
        .leaderboard(
            true,
            Metric::SessionsCompleted,
            WindowKind::Lifetime,
            None,
            1,
        )
        .await?;
    if let Some((group, _)) = busiest.first() {
        let week = kpi
            .scorecard(
                Subject {
                    kind: SubjectKind::Group.into(),
                    id: group.clone(),
                    mentor_id: String::new(),
                },
                WindowKind::Week,
            )
            .await?;
        let month = kpi
            .scorecard(
                Subject {
                    kind: SubjectKind::Group.into(),
                    id: group.clone(),
                    mentor_id: String::new(),
                },
                WindowKind::Rolling30d,
            )
            .await?;
        lines.push(format!("Busiest group {group}, this week"));
        lines.push(format!(
            "  mentees {} · sessions {} done, {} missed · recruits {} · sales {} PV ({} orders)",
            pick(&week, Metric::GroupSize),
            pick(&week, Metric::SessionsCompleted),
            pick(&week, Metric::SessionsMissed),
            pick(&week, Metric::Recruits),
            pick(&week, Metric::SalesVolume),
            pick(&week, Metric::Orders),
        ));
        lines.push(format!(
            "  mentor feedback {} from {} ratings · 30-day retention {}",
            pick(&week, Metric::FeedbackAvg),
            pick(&week, Metric::FeedbackCount),
            pick(&month, Metric::Retention30d),
        ));
        lines.push(String::new());
    }
    let root = match team {
        Some(team) => team.to_owned(),
        None => kpi
            .leaderboard(false, Metric::Recruits, WindowKind::Lifetime, None, 1)
            .await?
            .first()
            .map(|(partner, _)| partner.clone())
            .unwrap_or_default(),
    };
    lines.push(format!(
        "Team of {root}: sales volume this month, and days to first sale"
    ));
    let board = kpi
        .leaderboard(
            false,
            Metric::SalesVolume,
            WindowKind::Month,
            (!root.is_empty()).then_some(root.as_str()),
            10,
        )
        .await?;
    for (rank, (partner, volume)) in board.iter().enumerate() {
        let journey = kpi.journey(partner).await?;
        let first_sale = if journey.has_first_sale {
            format!("{} days", journey.days_to_first_sale)
        } else {
            "—".to_owned()
        };
        lines.push(format!(
            "  {:>2}. {partner:<12} {volume:>10} PV   first sale after {first_sale:<8} {}",
            rank + 1,
            journey.current_rank_name
        ));
    }
    Ok(lines)
}
