//! Each service's `/openapi.json` is a valid OpenAPI 3 document, and a bounded property-based
//! run against the live HTTP API (schemathesis, seeded) finds no 5xx and no answer that
//! violates the document.

use mentorstream_e2e::{Service, System};

/// Examples per operation and the time cap of one service's run: bounded, seeded, repeatable.
const EXAMPLES: &str = "10";
const MAX_SECONDS: &str = "30";

#[tokio::test]
async fn every_document_validates_and_fuzzing_finds_no_server_error_or_schema_violation() {
    let mut system = System::start(false).await;
    let key = system.key_with_every_scope("acme");
    let directory = tempfile::tempdir().expect("temporary directory");
    for service in Service::ALL {
        let base = system.endpoint(service);
        let document = reqwest::get(format!("{base}/openapi.json"))
            .await
            .expect("the document")
            .text()
            .await
            .expect("its text");
        let path = directory.path().join(format!("{service:?}.json"));
        std::fs::write(&path, document).expect("written");
        let validated = std::process::Command::new("openapi-spec-validator")
            .arg(&path)
            .output()
            .expect("openapi-spec-validator runs (make tools)");
        assert!(
            validated.status.success(),
            "{service:?}: {}{}",
            String::from_utf8_lossy(&validated.stdout),
            String::from_utf8_lossy(&validated.stderr)
        );
        let fuzzed = std::process::Command::new("schemathesis")
            .current_dir(directory.path())
            .args(["run", &path.display().to_string(), "--url", &base])
            .args(["--header", &format!("Authorization: Bearer {key}")])
            .args(["--checks", "not_a_server_error,response_schema_conformance"])
            .args(["--max-examples", EXAMPLES, "--max-time", MAX_SECONDS])
            .args(["--seed", "2026", "--workers", "1"])
            .env("NO_COLOR", "1")
            .output()
            .expect("schemathesis runs (make tools)");
        let report = String::from_utf8_lossy(&fuzzed.stdout);
        assert!(
            fuzzed.status.success(),
            "{service:?}: schemathesis found failures:\n{report}{}",
            String::from_utf8_lossy(&fuzzed.stderr)
        );
        let summary = report
            .lines()
            .find(|line| line.contains(" generated, "))
            .unwrap_or_default();
        eprintln!("{service:?}: {}", summary.trim());
    }
    system.stop();
}
