//! `mentorstream simulate`: a seeded MLM organisation streamed through IngestService and
//! MentorshipService, or written to a file, or a file replayed.

use std::path::PathBuf;

use clap::Args;
use mentorstream_config::Config;
use mentorstream_sim::{Driver, Scenario, SimConfig, generate};

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// An API key with the ingest and write scopes.
    #[arg(long, env = "MENTORSTREAM_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// The same seed gives the same organisation and the same stream.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[arg(long, default_value_t = 300)]
    partners: usize,
    /// Simulated days, ending now (at most 34: older events are past the allowed lateness).
    #[arg(long, default_value_t = 28, value_parser = clap::value_parser!(u32).range(2..=34))]
    days: u32,
    /// Steps per second; as fast as the services answer when not given.
    #[arg(long)]
    rate: Option<f64>,
    /// Write the stream to this file (JSON lines) instead of sending it.
    #[arg(long, conflicts_with = "replay")]
    write: Option<PathBuf>,
    /// Send the stream of this file instead of a generated one.
    #[arg(long)]
    replay: Option<PathBuf>,
    /// IngestService, e.g. http://127.0.0.1:50051 (default: the configured listen address).
    #[arg(long)]
    ingest: Option<String>,
    /// MentorshipService (default: the configured listen address).
    #[arg(long)]
    mentorship: Option<String>,
    /// Print whose dashboards are worth showing (`mentor <id>`, `leader <id>`: the busiest
    /// mentor and the largest team) and send nothing.
    #[arg(long, conflicts_with_all = ["write", "replay"])]
    showcase: bool,
}

pub async fn run(config: &Config, args: SimulateArgs) -> anyhow::Result<()> {
    let scenario = match &args.replay {
        Some(path) => Scenario::read(path)?,
        None => generate(&SimConfig {
            seed: args.seed,
            partners: args.partners,
            days: args.days,
            end: chrono::Utc::now(),
        }),
    };
    if args.showcase {
        let (mentor, leader) = scenario
            .showcase()
            .ok_or_else(|| anyhow::anyhow!("this company has no mentoring groups"))?;
        println!("mentor {mentor}\nleader {leader}");
        return Ok(());
    }
    if let Some(path) = &args.write {
        scenario.write(path)?;
        println!(
            "wrote {} steps ({} activity events) to {}",
            scenario.steps.len(),
            scenario.activity().count(),
            path.display()
        );
        return Ok(());
    }
    let api_key = args.api_key.ok_or_else(|| {
        anyhow::anyhow!("an API key is needed to send: --api-key or MENTORSTREAM_API_KEY")
    })?;
    let ingest = args
        .ingest
        .unwrap_or_else(|| format!("http://{}", config.ingest.grpc_listen));
    let mentorship = args
        .mentorship
        .unwrap_or_else(|| format!("http://{}", config.mentorship.grpc_listen));
    let mut driver = Driver::new(&ingest, &mentorship, &api_key)?;
    driver.rate = args.rate;
    driver.progress = true;
    let started = std::time::Instant::now();
    let report = driver.run(&scenario).await?;
    println!(
        "sent {} events in {:.1} s: {} accepted, {} duplicate, {} rejected; {} mentoring calls, \
         {} refused",
        report.events_sent,
        started.elapsed().as_secs_f64(),
        report.accepted,
        report.duplicate,
        report.rejected,
        report.calls,
        report.calls_refused
    );
    for refusal in &report.refusals {
        println!("  refused: {refusal}");
    }
    Ok(())
}
