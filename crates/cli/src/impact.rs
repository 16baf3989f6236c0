//! `mentorstream impact …`: what mentoring changes, from a terminal (ImpactService,
//! docs/impact.md) — programmes compared, the mentor audit as a table, CSV or JSON, the
//! first-90-days tracker, and mentor suggestions for a partner.

use clap::{Args, Subcommand, ValueEnum};
use mentorstream_config::Config;
use mentorstream_proto::common::v1::LocalDate;
use mentorstream_proto::mentorship::v1::impact_service_client::ImpactServiceClient;
use mentorstream_proto::mentorship::v1::mentorship_service_client::MentorshipServiceClient;
use mentorstream_proto::mentorship::v1::{
    AuditMentorsRequest, CompareProgramsRequest, Estimate, ListNewcomersRequest,
    ListProgramsRequest, Outcome, ProgramKind, SuggestMentorsRequest,
};
use tonic::transport::Channel;

#[derive(Debug, Args)]
pub struct Connection {
    /// An API key with the read scope.
    #[arg(long, env = "MENTORSTREAM_API_KEY", hide_env_values = true)]
    api_key: String,
    /// The mentorship service, e.g. http://127.0.0.1:50052 (default: the configured address).
    #[arg(long)]
    endpoint: Option<String>,
    /// Print the answer as JSON (the API's own field names).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ImpactCommand {
    /// Two programmes' cohorts side by side (default: the tenant's pilot against its standard
    /// programme).
    Compare {
        #[command(flatten)]
        connection: Connection,
        #[arg(long)]
        program_a: Option<String>,
        #[arg(long)]
        program_b: Option<String>,
        /// First local day of enrolment, e.g. 2026-11-01 (default: 90 days ago).
        #[arg(long)]
        enrolled_from: Option<chrono::NaiveDate>,
        /// Last local day of enrolment (default: today).
        #[arg(long)]
        enrolled_to: Option<chrono::NaiveDate>,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Measure as of this moment (RFC 3339; default now).
        #[arg(long)]
        at: Option<chrono::DateTime<chrono::FixedOffset>>,
        /// The summary's language.
        #[arg(long, value_enum, default_value = "en")]
        lang: Language,
    },
    /// Every mentor of a programme, ranked by their shrunk quality score.
    Audit {
        #[command(flatten)]
        connection: Connection,
        #[arg(long)]
        program: String,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Measure as of this moment (RFC 3339; default now).
        #[arg(long)]
        at: Option<chrono::DateTime<chrono::FixedOffset>>,
    },
    /// Partners in their first 90 days with their milestones and status.
    Newcomers {
        #[command(flatten)]
        connection: Connection,
        #[arg(long, default_value = "")]
        program: String,
        #[arg(long, default_value = "")]
        mentor: String,
    },
    /// Groups with room whose mentor suits a partner, best first, with reasons.
    Suggest {
        #[command(flatten)]
        connection: Connection,
        #[arg(long)]
        partner: String,
        #[arg(long, default_value = "")]
        program: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Language {
    En,
    Ru,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
}

struct Clients {
    impact: ImpactServiceClient<Channel>,
    mentorship: MentorshipServiceClient<Channel>,
    api_key: String,
}

impl Clients {
    async fn connect(config: &Config, connection: &Connection) -> anyhow::Result<Self> {
        let endpoint = connection
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("http://{}", config.mentorship.grpc_listen));
        let channel = tonic::transport::Endpoint::from_shared(endpoint)?
            .connect()
            .await?;
        Ok(Self {
            impact: ImpactServiceClient::new(channel.clone()),
            mentorship: MentorshipServiceClient::new(channel),
            api_key: connection.api_key.clone(),
        })
    }

    fn request<T>(&self, message: T) -> anyhow::Result<tonic::Request<T>> {
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {}", self.api_key).parse()?);
        Ok(request)
    }

    /// The first programme of `kind`, by the list's order.
    async fn program_of_kind(&mut self, kind: ProgramKind) -> anyhow::Result<String> {
        let programs = self
            .mentorship
            .list_programs(self.request(ListProgramsRequest {
                page_size: 500,
                page_token: String::new(),
            })?)
            .await?
            .into_inner()
            .programs;
        programs
            .into_iter()
            .find(|program| program.kind() == kind)
            .map(|program| program.program_id)
            .ok_or_else(|| anyhow::anyhow!("the tenant has no {} programme", kind.as_str_name()))
    }
}

/// `message` as the HTTP/JSON API would answer it.
fn json(message: &impl prost::Message, full_name: &str) -> anyhow::Result<String> {
    let pool = prost_reflect::DescriptorPool::decode(mentorstream_proto::FILE_DESCRIPTOR_SET)?;
    let descriptor = pool
        .get_message_by_name(full_name)
        .ok_or_else(|| anyhow::anyhow!("no message {full_name} in the contracts"))?;
    let dynamic =
        prost_reflect::DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice())?;
    Ok(serde_json::to_string_pretty(&dynamic)?)
}

pub async fn run(config: &Config, command: ImpactCommand) -> anyhow::Result<()> {
    match command {
        ImpactCommand::Compare {
            connection,
            program_a,
            program_b,
            enrolled_from,
            enrolled_to,
            seed,
            at,
            lang,
        } => {
            let mut clients = Clients::connect(config, &connection).await?;
            let program_a = match program_a {
                Some(id) => id,
                None => clients.program_of_kind(ProgramKind::Pilot).await?,
            };
            let program_b = match program_b {
                Some(id) => id,
                None => clients.program_of_kind(ProgramKind::Standard).await?,
            };
            // The tenant's local day may be ahead of UTC's: the default period ends tomorrow.
            let today = chrono::Utc::now().date_naive();
            let from = enrolled_from.unwrap_or(today - chrono::Days::new(90));
            let to = enrolled_to.unwrap_or(today + chrono::Days::new(1));
            let request = CompareProgramsRequest {
                program_a,
                program_b,
                enrolled_from: Some(LocalDate::from(from)),
                enrolled_to: Some(LocalDate::from(to)),
                seed,
                resamples: 0,
                at: at.map(timestamp),
            };
            let answer = clients
                .impact
                .compare_programs(clients.request(request)?)
                .await?
                .into_inner();
            if connection.json {
                println!(
                    "{}",
                    json(
                        &answer,
                        "mentorstream.mentorship.v1.CompareProgramsResponse"
                    )?
                );
                return Ok(());
            }
            println!(
                "{}\n",
                match lang {
                    Language::En => &answer.summary_en,
                    Language::Ru => &answer.summary_ru,
                }
            );
            println!("{:<28} {:>26} {:>26} {:>28}", "outcome", "a", "b", "a − b");
            for outcome in &answer.outcomes {
                println!(
                    "{:<28} {:>26} {:>26} {:>28}{}",
                    outcome_name(outcome.outcome),
                    estimate(outcome.a.as_ref()),
                    estimate(outcome.b.as_ref()),
                    estimate(outcome.difference.as_ref()),
                    if outcome.enough_data {
                        ""
                    } else {
                        "  (too few)"
                    }
                );
            }
            Ok(())
        }
        ImpactCommand::Audit {
            connection,
            program,
            format,
            seed,
            at,
        } => {
            let mut clients = Clients::connect(config, &connection).await?;
            let request = AuditMentorsRequest {
                program_id: program,
                seed,
                at: at.map(timestamp),
                ..AuditMentorsRequest::default()
            };
            let answer = clients
                .impact
                .audit_mentors(clients.request(request)?)
                .await?
                .into_inner();
            if connection.json || format == Format::Json {
                println!(
                    "{}",
                    json(&answer, "mentorstream.mentorship.v1.AuditMentorsResponse")?
                );
                return Ok(());
            }
            let separator = if format == Format::Csv { "," } else { "\t" };
            println!(
                "{}",
                [
                    "rank",
                    "mentor_id",
                    "name",
                    "mentees",
                    "score",
                    "score_low",
                    "score_high",
                    "raw_score",
                    "first_sale_30d",
                    "retention_30d",
                    "sales_volume_30d",
                    "feedback",
                ]
                .join(separator)
            );
            for row in &answer.mentors {
                let value = |estimate: Option<&Estimate>, field: fn(&Estimate) -> Option<f64>| {
                    estimate
                        .and_then(field)
                        .map(|v| format!("{v:.4}"))
                        .unwrap_or_default()
                };
                let fields = [
                    row.rank.to_string(),
                    row.mentor_id.clone(),
                    csv_text(&row.display_name),
                    row.mentees.to_string(),
                    value(row.score.as_ref(), |e| e.value),
                    value(row.score.as_ref(), |e| e.low),
                    value(row.score.as_ref(), |e| e.high),
                    row.raw_score.map(|v| format!("{v:.4}")).unwrap_or_default(),
                    value(row.first_sale_30d.as_ref(), |e| e.value),
                    value(row.retention_30d.as_ref(), |e| e.value),
                    value(row.sales_volume_30d.as_ref(), |e| e.value),
                    value(row.feedback.as_ref(), |e| e.value),
                ];
                println!("{}", fields.join(separator));
            }
            Ok(())
        }
        ImpactCommand::Newcomers {
            connection,
            program,
            mentor,
        } => {
            let mut clients = Clients::connect(config, &connection).await?;
            let request = ListNewcomersRequest {
                program_id: program,
                mentor_id: mentor,
                page_size: 500,
                ..ListNewcomersRequest::default()
            };
            let answer = clients
                .impact
                .list_newcomers(clients.request(request)?)
                .await?
                .into_inner();
            if connection.json {
                println!(
                    "{}",
                    json(&answer, "mentorstream.mentorship.v1.ListNewcomersResponse")?
                );
                return Ok(());
            }
            for newcomer in &answer.newcomers {
                let overdue: Vec<&str> = newcomer
                    .milestones
                    .iter()
                    .filter(|milestone| milestone.overdue)
                    .map(|milestone| {
                        milestone
                            .milestone()
                            .as_str_name()
                            .trim_start_matches("MILESTONE_")
                    })
                    .collect();
                println!(
                    "{:<12} day {:>2}  {:<9} mentor {:<12} overdue: {}",
                    newcomer.partner_id,
                    newcomer.day,
                    newcomer
                        .status()
                        .as_str_name()
                        .trim_start_matches("NEWCOMER_STATUS_"),
                    newcomer.mentor_id,
                    if overdue.is_empty() {
                        "-".to_owned()
                    } else {
                        overdue.join(", ")
                    }
                );
            }
            Ok(())
        }
        ImpactCommand::Suggest {
            connection,
            partner,
            program,
        } => {
            let mut clients = Clients::connect(config, &connection).await?;
            let request = SuggestMentorsRequest {
                partner_id: partner,
                program_id: program,
                limit: 0,
            };
            let answer = clients
                .impact
                .suggest_mentors(clients.request(request)?)
                .await?
                .into_inner();
            if connection.json {
                println!(
                    "{}",
                    json(&answer, "mentorstream.mentorship.v1.SuggestMentorsResponse")?
                );
                return Ok(());
            }
            for (index, suggestion) in answer.suggestions.iter().enumerate() {
                println!(
                    "{}. {} (group {}): {}",
                    index + 1,
                    suggestion.mentor_id,
                    suggestion.group_id,
                    suggestion.reasons.join("; ")
                );
            }
            Ok(())
        }
    }
}

fn timestamp(at: chrono::DateTime<chrono::FixedOffset>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// A CSV field: quoted when it holds a separator, a quote or a line break.
fn csv_text(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r', '\t']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

fn outcome_name(outcome: i32) -> String {
    Outcome::try_from(outcome)
        .map(|outcome| {
            outcome
                .as_str_name()
                .trim_start_matches("OUTCOME_")
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

fn estimate(estimate: Option<&Estimate>) -> String {
    let Some(estimate) = estimate else {
        return String::new();
    };
    let value = estimate
        .value
        .map_or("—".to_owned(), |value| format!("{value:.2}"));
    match (estimate.low, estimate.high) {
        (Some(low), Some(high)) => format!("{value} [{low:.2}, {high:.2}] n={}", estimate.n),
        _ => format!("{value} n={}", estimate.n),
    }
}
