//! Local stand-ins for the outside world the notifier talks to: a chat-bot gateway
//! ([`WebhookReceiver`], real HTTP) and a mail server ([`SmtpSink`], real SMTP). Each listens
//! on a free port, records everything it receives and answers as the test scripts it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpListener;

/// How long [`WebhookReceiver::wait_for`] and [`SmtpSink::wait_for`] wait.
const WAIT: Duration = Duration::from_secs(60);

/// One request the gateway received, and what it answered.
#[derive(Debug, Clone)]
pub struct ReceivedWebhook {
    pub idempotency_key: String,
    pub timestamp: String,
    pub signature: String,
    /// W3C trace context, if the sender continued a trace.
    pub traceparent: String,
    pub body: Vec<u8>,
    pub answered: u16,
}

impl ReceivedWebhook {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("the webhook body is JSON")
    }
}

#[derive(Debug, Default)]
struct Gateway {
    /// Statuses to answer, in order; 200 once they run out.
    script: VecDeque<u16>,
    received: Vec<ReceivedWebhook>,
    delay: Duration,
}

/// A chat-bot gateway on a free local port.
#[derive(Debug)]
pub struct WebhookReceiver {
    addr: SocketAddr,
    gateway: Arc<Mutex<Gateway>>,
    server: tokio::task::JoinHandle<()>,
}

impl WebhookReceiver {
    pub async fn start() -> Self {
        let gateway = Arc::new(Mutex::new(Gateway::default()));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(gateway.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            addr,
            gateway,
            server,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// The next requests are answered with these statuses, in order.
    pub fn answer_next(&self, statuses: &[u16]) {
        self.gateway.lock().unwrap().script.extend(statuses);
    }

    /// Every answer waits this long first.
    pub fn delay_answers(&self, delay: Duration) {
        self.gateway.lock().unwrap().delay = delay;
    }

    pub fn received(&self) -> Vec<ReceivedWebhook> {
        self.gateway.lock().unwrap().received.clone()
    }

    /// Waits until at least `count` requests arrived; all of them.
    pub async fn wait_for(&self, count: usize) -> Vec<ReceivedWebhook> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let received = self.received();
            if received.len() >= count {
                return received;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the gateway got {} of {count} requests: {received:?}",
                received.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn receive(
    State(gateway): State<Arc<Mutex<Gateway>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (answer, delay) = {
        let mut gateway = gateway.lock().unwrap();
        let answer = gateway.script.pop_front().unwrap_or(200);
        gateway.received.push(ReceivedWebhook {
            idempotency_key: header("idempotency-key"),
            timestamp: header("x-mentorstream-timestamp"),
            signature: header("x-mentorstream-signature"),
            traceparent: header("traceparent"),
            body: body.to_vec(),
            answered: answer,
        });
        (answer, gateway.delay)
    };
    tokio::time::sleep(delay).await;
    StatusCode::from_u16(answer).unwrap()
}

/// One e-mail the sink accepted or refused.
#[derive(Debug, Clone)]
pub struct ReceivedEmail {
    pub from: String,
    pub to: Vec<String>,
    pub message_id: String,
    pub subject: String,
    pub body: String,
    /// The reply code to the end of DATA.
    pub answered: u16,
}

#[derive(Debug, Default)]
struct Mailbox {
    /// Reply codes to the end of DATA, in order; 250 once they run out.
    script: VecDeque<u16>,
    received: Vec<ReceivedEmail>,
}

/// An SMTP server on a free local port that keeps every message (no TLS, no auth).
#[derive(Debug)]
pub struct SmtpSink {
    addr: SocketAddr,
    mailbox: Arc<Mutex<Mailbox>>,
    server: tokio::task::JoinHandle<()>,
}

impl SmtpSink {
    pub async fn start() -> Self {
        let mailbox = Arc::new(Mutex::new(Mailbox::default()));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = mailbox.clone();
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(converse(stream, shared.clone()));
            }
        });
        Self {
            addr,
            mailbox,
            server,
        }
    }

    /// `smtp://127.0.0.1:<port>`: plain SMTP, as lettre's URL.
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// The next messages are answered with these codes at the end of DATA, in order.
    pub fn answer_next(&self, codes: &[u16]) {
        self.mailbox.lock().unwrap().script.extend(codes);
    }

    pub fn received(&self) -> Vec<ReceivedEmail> {
        self.mailbox.lock().unwrap().received.clone()
    }

    pub async fn wait_for(&self, count: usize) -> Vec<ReceivedEmail> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let received = self.received();
            if received.len() >= count {
                return received;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the sink got {} of {count} e-mails: {received:?}",
                received.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// One SMTP session (RFC 5321), just enough for a client that sends mail.
async fn converse(stream: tokio::net::TcpStream, mailbox: Arc<Mutex<Mailbox>>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    let reply = async |write: &mut tokio::net::tcp::OwnedWriteHalf, text: &str| {
        write.write_all(text.as_bytes()).await.is_ok()
    };
    if !reply(&mut write, "220 sink ESMTP ready\r\n").await {
        return;
    }
    let (mut from, mut to) = (String::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let command = line.trim_end().to_owned();
        let verb = command
            .split([' ', ':'])
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let answer = match verb.as_str() {
            "EHLO" => "250-sink\r\n250 8BITMIME\r\n".to_owned(),
            "HELO" | "NOOP" => "250 OK\r\n".to_owned(),
            "RSET" => {
                from.clear();
                to.clear();
                "250 OK\r\n".to_owned()
            }
            "MAIL" => {
                from = address(&command);
                "250 OK\r\n".to_owned()
            }
            "RCPT" => {
                to.push(address(&command));
                "250 OK\r\n".to_owned()
            }
            "DATA" => {
                if !reply(&mut write, "354 end with <CRLF>.<CRLF>\r\n").await {
                    return;
                }
                let mut data = Vec::new();
                loop {
                    let mut chunk = String::new();
                    if lines.read_line(&mut chunk).await.unwrap_or(0) == 0 {
                        return;
                    }
                    if chunk == ".\r\n" {
                        break;
                    }
                    let chunk = chunk.strip_prefix('.').unwrap_or(&chunk);
                    data.extend_from_slice(chunk.as_bytes());
                }
                let parsed = mail_parser::MessageParser::default().parse(&data[..]);
                let mut mailbox = mailbox.lock().unwrap();
                let answered = mailbox.script.pop_front().unwrap_or(250);
                mailbox.received.push(ReceivedEmail {
                    from: std::mem::take(&mut from),
                    to: std::mem::take(&mut to),
                    message_id: parsed
                        .as_ref()
                        .and_then(|message| message.message_id())
                        .unwrap_or_default()
                        .to_owned(),
                    subject: parsed
                        .as_ref()
                        .and_then(|message| message.subject())
                        .unwrap_or_default()
                        .to_owned(),
                    body: parsed
                        .as_ref()
                        .and_then(|message| message.body_text(0))
                        .unwrap_or_default()
                        // Lines end in CRLF on the wire; tests compare text.
                        .replace("\r\n", "\n")
                        .trim_end()
                        .to_owned(),
                    answered,
                });
                format!(
                    "{answered} {}\r\n",
                    if answered < 400 { "queued" } else { "refused" }
                )
            }
            "QUIT" => {
                let _ = reply(&mut write, "221 bye\r\n").await;
                return;
            }
            _ => "502 command not implemented\r\n".to_owned(),
        };
        if !reply(&mut write, &answer).await {
            return;
        }
    }
}

/// The address of `MAIL FROM:<a@b>` or `RCPT TO:<a@b>`.
fn address(command: &str) -> String {
    command
        .split_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .map(|(address, _)| address.to_owned())
        .unwrap_or_default()
}
