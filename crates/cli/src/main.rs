//! `mentorstream`: the command for people.
//!
//! - `mentorstream up` runs the four services in one process (the local and demo default);
//! - `mentorstream admin …` migrates the control database and manages tenants and API keys;
//! - `mentorstream simulate` streams a seeded MLM organisation through the APIs;
//! - `mentorstream kpi scorecard|leaderboard|journey|dashboard` reads KPIs;
//! - `mentorstream kpi rebuild` recomputes the KPI state from the topics.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod admin;
mod dashboard;
mod impact;
mod kpi;
mod simulate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mentorstream_config::Config;
use mentorstream_runtime::{Context, Listeners};

#[derive(Debug, Parser)]
#[command(
    name = "mentorstream",
    version,
    about = "Micro-mentorship with automatic KPI"
)]
struct Cli {
    /// Configuration file (TOML); MENTORSTREAM__SECTION__KEY variables override it.
    #[arg(long, global = true, env = "MENTORSTREAM_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run ingest, mentorship, kpi-aggregator and notifier in this process.
    Up,
    /// Migrations, tenants and API keys.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// Read KPIs, or rebuild their state.
    #[command(subcommand)]
    Kpi(KpiCommand),
    /// Stream a seeded, realistic MLM organisation through IngestService and
    /// MentorshipService (or write it to a file, or replay one).
    Simulate(simulate::SimulateArgs),
    /// Check the configuration (defaults, file, environment) and print it, secrets redacted.
    Config,
    /// Dashboard links, as an MLM platform asks for them.
    #[command(subcommand)]
    Dashboard(DashboardCommand),
    /// What mentoring changes: programmes compared, the mentor audit, newcomers, suggestions.
    #[command(subcommand)]
    Impact(impact::ImpactCommand),
}

#[derive(Debug, Subcommand)]
enum DashboardCommand {
    /// A signed, expiring link to a partner's pages (docs/dashboards.md).
    Link(dashboard::LinkArgs),
}

#[derive(Debug, Subcommand)]
enum KpiCommand {
    /// Replay the topics from the start into a fresh key namespace and switch every
    /// aggregator over to it when caught up (e.g. after Redis lost data).
    Rebuild,
    #[command(flatten)]
    Query(kpi::Query),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match Config::load(cli.config.as_deref()) {
        Ok(config) => match cli.command {
            Command::Up => Box::pin(up(config)).await,
            Command::Admin(command) => admin::run(&config, command).await,
            Command::Kpi(KpiCommand::Rebuild) => rebuild(config).await,
            Command::Kpi(KpiCommand::Query(query)) => kpi::run(&config, query).await,
            Command::Simulate(args) => simulate::run(&config, args).await,
            Command::Dashboard(DashboardCommand::Link(args)) => {
                dashboard::link(&config, args).await
            }
            Command::Impact(command) => impact::run(&config, command).await,
            Command::Config => {
                println!("{config:#?}");
                Ok(())
            }
        },
        Err(error) => Err(error.into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // A person reads this: the cause chain on one line, no backtrace.
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn up(config: Config) -> anyhow::Result<()> {
    let telemetry = mentorstream_telemetry::init(&config.telemetry, "mentorstream")?;
    let context = Context::connect(config, telemetry.clone()).await?;
    context.tenants.migrate().await?;
    let config = &context.config;
    let ingest = Listeners::bind(&mentorstream_ingest::endpoints(config)).await?;
    let mentorship = Listeners::bind(&mentorstream_mentorship::endpoints(config)).await?;
    let kpi = Listeners::bind(&mentorstream_kpi_aggregator::endpoints(config)).await?;
    let notifier = Listeners::bind(&mentorstream_notifier::endpoints(config)).await?;
    let services = {
        let context = context.clone();
        async move {
            tokio::try_join!(
                async {
                    mentorstream_ingest::run(context.clone(), ingest)
                        .await
                        .map_err(anyhow::Error::from)
                },
                async {
                    mentorstream_mentorship::run(context.clone(), mentorship)
                        .await
                        .map_err(anyhow::Error::from)
                },
                async {
                    mentorstream_kpi_aggregator::run(context.clone(), kpi)
                        .await
                        .map_err(anyhow::Error::from)
                },
                async {
                    mentorstream_notifier::run(context.clone(), notifier)
                        .await
                        .map_err(anyhow::Error::from)
                },
            )
            .map(|_| ())
            .map_err(UpError)
        }
    };
    let result = mentorstream_runtime::run_until_shutdown(&context, Box::pin(services)).await;
    telemetry.shutdown();
    result
}

async fn rebuild(config: Config) -> anyhow::Result<()> {
    let telemetry = mentorstream_telemetry::init(&config.telemetry, "mentorstream")?;
    let context = Context::connect(config, telemetry.clone()).await?;
    // Ctrl-C stops the replay; the active generation stays as it was.
    context.shutdown.trigger_on_signals();
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} records, {per_sec}, {eta} left",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let rebuilt = mentorstream_kpi_aggregator::rebuild::rebuild(
        &context.config,
        &context.tenants,
        context.shutdown.token(),
        &|replayed| {
            bar.set_length(u64::try_from(replayed.records).unwrap_or(0));
            bar.set_position(u64::try_from(replayed.applied).unwrap_or(0));
        },
    )
    .await;
    bar.finish_and_clear();
    let rebuilt = rebuilt?;
    println!(
        "rebuilt {} records into generation {} (was {}) in {:.1} s; aggregators switch to it within {} s",
        rebuilt.records,
        rebuilt.generation,
        rebuilt.previous,
        rebuilt.elapsed.as_secs_f64(),
        mentorstream_kpi_aggregator::namespace::POLL.as_secs()
    );
    telemetry.shutdown();
    Ok(())
}

/// A service of `up` failed; carries the cause chain.
#[derive(Debug, thiserror::Error)]
#[error("{0:#}")]
struct UpError(anyhow::Error);
