//! The shared gRPC server against a real control database: health, reflection (grpcurl),
//! API-key authentication and scopes, TLS and mTLS.

use std::sync::Arc;
use std::time::Duration;

use mentorstream_config::{Config, TlsConfig};
use mentorstream_proto::ingest::v1::ingest_service_client::IngestServiceClient;
use mentorstream_proto::ingest::v1::ingest_service_server::{IngestService, IngestServiceServer};
use mentorstream_proto::ingest::v1::{IngestRequest, IngestResponse};
use mentorstream_tenancy::{NewTenant, Scope, Tenants};
use mentorstream_testkit::fresh_database;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic::{Code, Request, Response, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// A service whose one RPC needs the ingest scope, to observe what the layer lets through;
/// an event without a partner is refused with a field violation.
struct NeedsIngestScope;

#[tonic::async_trait]
impl IngestService for NeedsIngestScope {
    async fn ingest(
        &self,
        request: Request<IngestRequest>,
    ) -> Result<Response<IngestResponse>, Status> {
        mentorstream_grpc::authorize(&request, Scope::Ingest)?;
        if let Some(index) = request
            .get_ref()
            .events
            .iter()
            .position(|event| event.partner_id.is_empty())
        {
            return Err(mentorstream_grpc::field_violation(
                format!("events[{index}].partner_id"),
                "is required",
            ));
        }
        Ok(Response::new(IngestResponse::default()))
    }
}

struct Server {
    addr: std::net::SocketAddr,
    shutdown: CancellationToken,
    served: tokio::task::JoinHandle<Result<(), mentorstream_grpc::GrpcError>>,
    ingest_key: String,
    read_key: String,
}

async fn start(tls: TlsConfig) -> Server {
    mentorstream_telemetry::init_for_tests();
    let base = Config::load(None).expect("defaults");
    let tenants = Tenants::connect(&fresh_database(&base, "grpc").await, 2)
        .await
        .expect("connect");
    tenants.migrate().await.expect("migrate");
    tenants
        .create_tenant(NewTenant {
            name: "acme".into(),
            time_zone: "Europe/Moscow".into(),
            default_locale: "ru".into(),
        })
        .await
        .expect("tenant");
    let ingest_key = tenants
        .create_key("acme", "ingest".parse().expect("scopes"))
        .await
        .expect("key")
        .api_key;
    let read_key = tenants
        .create_key("acme", "read,write".parse().expect("scopes"))
        .await
        .expect("key")
        .api_key;

    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let health = mentorstream_grpc::Health::new();
    health
        .reporter
        .set_serving::<IngestServiceServer<NeedsIngestScope>>()
        .await;
    let shutdown = CancellationToken::new();
    let routes = tonic::service::Routes::new(IngestServiceServer::new(NeedsIngestScope));
    let served = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            mentorstream_grpc::serve(
                listener,
                &tls,
                Arc::new(tenants),
                &["mentorstream.ingest.v1.IngestService"],
                routes,
                health,
                shutdown,
            )
            .await
        }
    });
    Server {
        addr,
        shutdown,
        served,
        ingest_key,
        read_key,
    }
}

impl Server {
    async fn stop(self) {
        self.shutdown.cancel();
        self.served.await.expect("joins").expect("clean stop");
    }
}

fn no_tls() -> TlsConfig {
    TlsConfig {
        enabled: false,
        cert_path: "".into(),
        key_path: "".into(),
        client_ca_path: "".into(),
    }
}

async fn channel(addr: std::net::SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .expect("connect")
}

fn with_key(key: Option<&str>) -> Request<IngestRequest> {
    match key {
        Some(key) => mentorstream_testkit::authorized(key, IngestRequest::default()),
        None => Request::new(IngestRequest::default()),
    }
}

#[tokio::test]
async fn health_answers_without_a_key_and_reflection_lists_the_services() {
    let server = start(no_tls()).await;
    let mut health = HealthClient::new(channel(server.addr).await);
    for service in ["", "mentorstream.ingest.v1.IngestService"] {
        let answer = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("health answers")
            .into_inner();
        assert_eq!(answer.status(), ServingStatus::Serving, "{service:?}");
    }

    let grpcurl = std::env::var("GRPCURL").unwrap_or_else(|_| "grpcurl".into());
    let output = tokio::process::Command::new(&grpcurl)
        .args(["-plaintext", &server.addr.to_string(), "list"])
        .output()
        .await
        .unwrap_or_else(|error| panic!("cannot run {grpcurl} (make tools): {error}"));
    assert!(output.status.success(), "{output:?}");
    let listed: Vec<String> = String::from_utf8(output.stdout)
        .expect("utf-8")
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        listed,
        [
            "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection",
            "mentorstream.ingest.v1.IngestService",
        ]
    );
    let described = tokio::process::Command::new(&grpcurl)
        .args([
            "-plaintext",
            &server.addr.to_string(),
            "describe",
            "mentorstream.ingest.v1.IngestService",
        ])
        .output()
        .await
        .expect("grpcurl describe");
    let described = String::from_utf8(described.stdout).expect("utf-8");
    assert!(
        described.contains("rpc IngestStream ( stream .mentorstream.ingest.v1.IngestStreamRequest ) returns ( stream .mentorstream.ingest.v1.IngestStreamResponse );"),
        "{described}"
    );
    // grpcurl decodes the error details through reflection.
    let refused = tokio::process::Command::new(&grpcurl)
        .args([
            "-plaintext",
            "-H",
            &format!("authorization: Bearer {}", server.ingest_key),
            "-d",
            r#"{"events": [{"source": "crm"}]}"#,
            &server.addr.to_string(),
            "mentorstream.ingest.v1.IngestService/Ingest",
        ])
        .output()
        .await
        .expect("grpcurl ingest");
    let printed = String::from_utf8(refused.stderr).expect("utf-8");
    assert_eq!(
        printed.lines().map(str::trim).collect::<Vec<_>>(),
        [
            "ERROR:",
            "Code: InvalidArgument",
            "Message: events[0].partner_id: is required",
            "Details:",
            "1)\t{\"@type\":\"type.googleapis.com/google.rpc.BadRequest\",\"fieldViolations\":\
             [{\"field\":\"events[0].partner_id\",\"description\":\"is required\"}]}",
        ],
        "{printed}"
    );
    server.stop().await;
}

#[tokio::test]
async fn calls_need_a_known_key_with_the_right_scope() {
    let server = start(no_tls()).await;
    let mut client = IngestServiceClient::new(channel(server.addr).await);

    let missing = client.ingest(with_key(None)).await.expect_err("no key");
    assert_eq!(missing.code(), Code::Unauthenticated);
    assert_eq!(
        missing.message(),
        "missing API key: send `authorization: Bearer <api key>`"
    );

    let mut malformed = Request::new(IngestRequest::default());
    malformed
        .metadata_mut()
        .insert("authorization", "Basic abc".parse().expect("ascii"));
    let malformed = client.ingest(malformed).await.expect_err("not bearer");
    assert_eq!(malformed.code(), Code::Unauthenticated);
    assert_eq!(
        malformed.message(),
        "malformed authorization header: expected `Bearer <api key>`"
    );

    let unknown_key = format!("ms_{}_{}", "a".repeat(12), "b".repeat(64));
    let unknown = client
        .ingest(with_key(Some(&unknown_key)))
        .await
        .expect_err("unknown key");
    assert_eq!(unknown.code(), Code::Unauthenticated);
    assert_eq!(unknown.message(), "unknown or revoked API key");

    let denied = client
        .ingest(with_key(Some(&server.read_key)))
        .await
        .expect_err("read key cannot ingest");
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(
        denied
            .message()
            .ends_with("lacks the `ingest` scope (it has: read,write)"),
        "{}",
        denied.message()
    );

    client
        .ingest(with_key(Some(&server.ingest_key)))
        .await
        .expect("the ingest key passes");
    server.stop().await;
}

struct Pki {
    dir: std::path::PathBuf,
    ca_pem: String,
    client_cert_pem: String,
    client_key_pem: String,
}

/// A CA, a server certificate for localhost and a client certificate, all from rcgen.
fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca");
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().expect("key");
    let server_cert = CertificateParams::new(vec!["localhost".to_owned()])
        .expect("params")
        .signed_by(&server_key, &issuer)
        .expect("server cert");
    let client_key = KeyPair::generate().expect("key");
    let client_cert = CertificateParams::new(vec!["client".to_owned()])
        .expect("params")
        .signed_by(&client_key, &issuer)
        .expect("client cert");

    let dir = std::env::temp_dir().join(mentorstream_testkit::unique("pki"));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).expect("write");
    std::fs::write(dir.join("server.pem"), server_cert.pem()).expect("write");
    std::fs::write(dir.join("server.key"), server_key.serialize_pem()).expect("write");
    Pki {
        dir,
        ca_pem: ca_cert.pem(),
        client_cert_pem: client_cert.pem(),
        client_key_pem: client_key.serialize_pem(),
    }
}

async fn tls_channel(
    addr: std::net::SocketAddr,
    pki: &Pki,
    client_identity: bool,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca_pem))
        .domain_name("localhost");
    if client_identity {
        tls = tls.identity(Identity::from_pem(
            &pki.client_cert_pem,
            &pki.client_key_pem,
        ));
    }
    Channel::from_shared(format!("https://{addr}"))
        .expect("uri")
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
}

#[tokio::test]
async fn tls_and_mutual_tls_are_a_configuration_switch() {
    let pki = pki();
    let tls = TlsConfig {
        enabled: true,
        cert_path: pki.dir.join("server.pem"),
        key_path: pki.dir.join("server.key"),
        client_ca_path: "".into(),
    };
    let server = start(tls.clone()).await;
    let mut client = IngestServiceClient::new(
        tls_channel(server.addr, &pki, false)
            .await
            .expect("TLS handshake"),
    );
    client
        .ingest(with_key(Some(&server.ingest_key)))
        .await
        .expect("served over TLS");
    server.stop().await;

    let mutual = TlsConfig {
        client_ca_path: pki.dir.join("ca.pem"),
        ..tls
    };
    let server = start(mutual).await;
    let without_identity = match tls_channel(server.addr, &pki, false).await {
        Err(_) => None,
        Ok(channel) => Some(
            IngestServiceClient::new(channel)
                .ingest(with_key(Some(&server.ingest_key)))
                .await,
        ),
    };
    assert!(
        !matches!(without_identity, Some(Ok(_))),
        "a client without a certificate is refused under mTLS"
    );
    let mut client = IngestServiceClient::new(
        tls_channel(server.addr, &pki, true)
            .await
            .expect("mTLS handshake"),
    );
    client
        .ingest(with_key(Some(&server.ingest_key)))
        .await
        .expect("served over mTLS");
    server.stop().await;
}

/// The same RPC over HTTP/JSON on the same port: the key, the scopes, the field violations and
/// the idempotency key work as over gRPC; refusals are JSON google.rpc.Status.
#[tokio::test]
async fn every_unary_rpc_answers_json_on_the_same_port() {
    let server = start(no_tls()).await;
    let http = reqwest::Client::new();
    let url = format!("http://{}/v1/ingest/Ingest", server.addr);
    let post =
        |key: &str, body: serde_json::Value| http.post(&url).bearer_auth(key).json(&body).send();
    let answered = post(&server.ingest_key, serde_json::json!({"events": []}))
        .await
        .expect("answered");
    assert_eq!(answered.status(), reqwest::StatusCode::OK);
    assert_eq!(
        answered.json::<serde_json::Value>().await.expect("json"),
        serde_json::json!({})
    );

    let refused = post(
        &server.ingest_key,
        serde_json::json!({"events": [{"source": "crm"}]}),
    )
    .await
    .expect("answered");
    assert_eq!(refused.status(), reqwest::StatusCode::BAD_REQUEST);
    assert_eq!(
        refused.json::<serde_json::Value>().await.expect("json"),
        serde_json::json!({
            "code": 3,
            "message": "events[0].partner_id: is required",
            "details": [{
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": "events[0].partner_id", "description": "is required"}],
            }],
        })
    );
    let wrong_scope = post(&server.read_key, serde_json::json!({}))
        .await
        .expect("answered");
    assert_eq!(wrong_scope.status(), reqwest::StatusCode::FORBIDDEN);
    let no_key = http
        .post(&url)
        .json(&serde_json::json!({}))
        .send()
        .await
        .expect("answered");
    assert_eq!(no_key.status(), reqwest::StatusCode::UNAUTHORIZED);
    assert_eq!(
        no_key.json::<serde_json::Value>().await.expect("json")["message"],
        "missing API key: send `authorization: Bearer <api key>`"
    );
    let malformed = http
        .post(&url)
        .bearer_auth(&server.ingest_key)
        .body("{\"events\": 7}")
        .send()
        .await
        .expect("answered");
    assert_eq!(malformed.status(), reqwest::StatusCode::BAD_REQUEST);
    let malformed: serde_json::Value = malformed.json().await.expect("json");
    assert_eq!(
        malformed["details"][0]["fieldViolations"][0]["field"], "body",
        "{malformed}"
    );
    let unknown = http
        .post(format!("http://{}/v1/ingest/Nothing", server.addr))
        .bearer_auth(&server.ingest_key)
        .send()
        .await
        .expect("answered");
    assert_eq!(unknown.status(), reqwest::StatusCode::NOT_FOUND);

    // The OpenAPI document lists the method with its schemas, and asks for no key itself.
    let document: serde_json::Value = http
        .get(format!("http://{}/openapi.json", server.addr))
        .send()
        .await
        .expect("answered")
        .json()
        .await
        .expect("json");
    assert_eq!(document["openapi"], "3.0.3");
    let ingest = &document["paths"]["/v1/ingest/Ingest"]["post"];
    assert_eq!(
        ingest["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/mentorstream.ingest.v1.IngestRequest"
    );
    let event = &document["components"]["schemas"]["mentorstream.activity.v1.ActivityEvent"];
    assert_eq!(event["properties"]["occurredAt"]["format"], "date-time");
    assert_eq!(event["properties"]["partnerId"]["type"], "string");
    assert!(
        document["paths"]["/v1/ingest/IngestStream"].is_null(),
        "client streams are gRPC only"
    );
    server.stop().await;
}
