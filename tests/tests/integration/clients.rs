//! The README's client examples, run as the README runs them (after `make up`), against a live
//! system: curl and Python over HTTP/JSON, grpcurl over gRPC, TypeScript on Node 20. Each
//! enrols a partner, records an order of volume 49.50 and reads the scorecard once `asOf` has
//! passed the order; each must print exactly that partner's numbers.

use std::path::{Path, PathBuf};
use std::process::Command;

use mentorstream_e2e::{Service, System};
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `program args` in `directory` with the system's addresses and `partner`; its stdout.
fn run(
    system: &System,
    key: &str,
    partner: &str,
    directory: &Path,
    program: &str,
    args: &[&str],
) -> String {
    let address = |service| system.endpoint(service);
    let bare = |service| address(service).trim_start_matches("http://").to_owned();
    let output = Command::new(program)
        .args(args)
        .current_dir(directory)
        .env("MENTORSTREAM_API_KEY", key)
        .env("MENTORSTREAM_INGEST_URL", address(Service::Ingest))
        .env("MENTORSTREAM_KPI_URL", address(Service::Kpi))
        .env("MENTORSTREAM_INGEST_ADDR", bare(Service::Ingest))
        .env("MENTORSTREAM_KPI_ADDR", bare(Service::Kpi))
        .env("PARTNER", partner)
        .output()
        .unwrap_or_else(|error| panic!("cannot run {program}: {error}"));
    assert!(
        output.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8")
}

/// (orders, sales volume) of a printed scorecard.
fn numbers(scorecard: &str) -> (String, String) {
    let card: Value = serde_json::from_str(scorecard).expect("a JSON scorecard");
    let value = |metric: &str| {
        card["values"]
            .as_array()
            .expect("values")
            .iter()
            .find(|value| value["metric"] == metric)
            .cloned()
            .unwrap_or_else(|| panic!("{metric} in {card}"))
    };
    (
        value("METRIC_ORDERS")["count"]
            .as_str()
            .expect("count")
            .to_owned(),
        value("METRIC_SALES_VOLUME")["decimal"]["value"]
            .as_str()
            .expect("decimal")
            .to_owned(),
    )
}

#[tokio::test]
async fn the_readme_client_examples_print_the_numbers_they_caused() {
    let mut system = System::start(false).await;
    let key = system.key_with_every_scope("acme");
    let root = root();
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README");
    for command in [
        "make up",
        "export PATH=$PWD/.stack/tools/bin:$PATH",
        "export MENTORSTREAM_API_KEY=$(cat .stack/demo/api-key)",
        "examples/clients/curl.sh",
        "examples/clients/grpcurl.sh",
        "python3 examples/clients/client.py",
        "(cd examples/clients/typescript && npm ci && npm start)",
    ] {
        assert!(readme.contains(command), "the README runs `{command}`");
    }
    let expected = ("1".to_owned(), "49.50".to_owned());

    let curl = run(
        &system,
        &key,
        "readme-curl",
        &root,
        "examples/clients/curl.sh",
        &[],
    );
    assert_eq!(numbers(&curl), expected);
    let grpcurl = run(
        &system,
        &key,
        "readme-grpcurl",
        &root,
        "examples/clients/grpcurl.sh",
        &[],
    );
    assert_eq!(numbers(&grpcurl), expected);
    let python = run(
        &system,
        &key,
        "readme-python",
        &root,
        "python3",
        &["examples/clients/client.py"],
    );
    assert_eq!(
        python,
        "readme-python: EVENT_STATUS_ACCEPTED, EVENT_STATUS_ACCEPTED; orders 1, sales volume 49.50\n"
    );
    let typescript = root.join("examples/clients/typescript");
    run(
        &system,
        &key,
        "-",
        &typescript,
        "npm",
        &["ci", "--no-audit", "--no-fund", "--silent"],
    );
    let printed = run(
        &system,
        &key,
        "readme-typescript",
        &typescript,
        "npm",
        &["start", "--silent"],
    );
    assert_eq!(
        printed,
        "readme-typescript: EVENT_STATUS_ACCEPTED, EVENT_STATUS_ACCEPTED; orders 1, sales volume 49.50\n"
    );
    system.stop();
}
