//! A real headless browser for the end-to-end tests: Debian's chromium driven by
//! `tests/browser/driver.mjs` (playwright-core, installed by deploy/local/tools.sh), one JSON
//! command per line on its stdin, one answer per line on its stdout.

use std::path::PathBuf;
use std::process::Stdio;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

#[derive(Debug)]
pub struct Browser {
    child: Child,
    stdin: ChildStdin,
    answers: Lines<BufReader<ChildStdout>>,
}

impl Browser {
    pub fn launch() -> Self {
        let driver = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser/driver.mjs");
        let mut child = Command::new("node")
            .arg(&driver)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs tests/browser/driver.mjs (deploy/local/tools.sh installs it)");
        let stdin = child.stdin.take().expect("stdin");
        let answers = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Self {
            child,
            stdin,
            answers,
        }
    }

    /// Sends one command and reads its answer, whatever `ok` says.
    pub async fn send(&mut self, command: Value) -> Value {
        let mut line = command.to_string();
        line.push('\n');
        self.stdin
            .write_all(line.as_bytes())
            .await
            .expect("driver takes commands");
        let answer = self
            .answers
            .next_line()
            .await
            .expect("driver answers")
            .expect("driver is still running");
        serde_json::from_str(&answer).expect("driver answers JSON")
    }

    /// Sends one command that must succeed.
    pub async fn run(&mut self, command: Value) -> Value {
        let answer = self.send(command.clone()).await;
        assert_eq!(answer["ok"], true, "{command} → {answer}");
        answer
    }

    /// Opens `url` in a fresh page (1280×900 unless `width` is given): the document's status.
    pub async fn open(&mut self, url: &str, width: u32, locale: &str) -> Value {
        self.run(
            json!({"cmd": "open", "url": url, "width": width, "height": 900, "locale": locale}),
        )
        .await
    }

    /// Every `[data-live]` number on the page: key → (data-value, text).
    pub async fn values(&mut self) -> Value {
        self.run(json!({"cmd": "values"})).await
    }

    pub async fn screenshot(&mut self, path: &std::path::Path) {
        self.run(json!({"cmd": "screenshot", "path": path, "fullPage": true}))
            .await;
    }

    pub async fn close(mut self) {
        self.run(json!({"cmd": "close"})).await;
        let _ = self.child.wait().await;
    }
}
