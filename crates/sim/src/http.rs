//! A transport for the generated gRPC clients that speaks the HTTP/JSON API instead: each
//! call's protobuf request becomes its proto3 JSON and is posted to `/v1/{service}/{Method}`;
//! the JSON answer becomes the protobuf answer, and a refusal (HTTP status + a
//! `google.rpc.Status` in JSON) becomes the same `tonic::Status` with its details. So one
//! driver can send a scenario either way and the two be compared.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};

use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
use http_body_util::BodyExt as _;
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, MethodDescriptor};
use tonic::body::Body;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a call could not travel (a concrete type: a boxed error as a service's error makes the
/// driver's futures lose `Send` in generic code).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct TransportError(pub BoxError);

/// Mentorstream's contracts and google.rpc's, to transcode requests, answers and refusals.
static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    let mut pool = DescriptorPool::global();
    pool.decode_file_descriptor_set(mentorstream_proto::FILE_DESCRIPTOR_SET)
        .and_then(|()| pool.decode_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET))
        .unwrap_or_else(|error| unreachable!("the embedded descriptors decode: {error}"));
    pool
});

/// gRPC calls carried as HTTP/JSON to the service at `base` (`http://host:port`).
#[derive(Debug, Clone)]
pub struct JsonTransport {
    client: reqwest::Client,
    base: Arc<str>,
}

impl JsonTransport {
    pub fn new(base: &str) -> Self {
        Self {
            client: reqwest::Client::new(),
            base: base.trim_end_matches('/').into(),
        }
    }
}

impl tower::Service<http::Request<Body>> for JsonTransport {
    type Response = http::Response<Body>;
    type Error = TransportError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, TransportError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), TransportError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let transport = self.clone();
        Box::pin(async move { transport.unary(request).await.map_err(TransportError) })
    }
}

impl JsonTransport {
    async fn unary(&self, request: http::Request<Body>) -> Result<http::Response<Body>, BoxError> {
        let method = method(request.uri().path())?;
        let authorization = request.headers().get(http::header::AUTHORIZATION).cloned();
        let mut framed = request.into_body().collect().await?.to_bytes();
        if framed.len() < 5 {
            return Err("a gRPC request without its message".into());
        }
        framed.advance(5);
        let message = DynamicMessage::decode(method.input(), framed)?;
        let service = method.parent_service();
        let short = service
            .name()
            .strip_suffix("Service")
            .unwrap_or(service.name())
            .to_lowercase();
        let mut call = self
            .client
            .post(format!("{}/v1/{short}/{}", self.base, method.name()))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(&message)?);
        if let Some(authorization) = authorization {
            call = call.header(http::header::AUTHORIZATION, authorization);
        }
        let answer = call.send().await?;
        let status = answer.status();
        let json: serde_json::Value = answer.json().await?;
        if !status.is_success() {
            return Ok(refusal(&json)?.into_http());
        }
        let answer = DynamicMessage::deserialize(method.output(), json)?;
        Ok(grpc_answer(&answer.encode_to_vec()))
    }
}

/// The method at a gRPC path, `/package.Service/Method`.
fn method(path: &str) -> Result<MethodDescriptor, BoxError> {
    let (service, name) = path
        .trim_start_matches('/')
        .split_once('/')
        .ok_or_else(|| format!("`{path}` is not a gRPC path"))?;
    POOL.get_service_by_name(service)
        .and_then(|service| service.methods().find(|method| method.name() == name))
        .ok_or_else(|| format!("no method `{path}`").into())
}

/// A refusal's `google.rpc.Status` JSON as the `tonic::Status` it stands for.
fn refusal(json: &serde_json::Value) -> Result<tonic::Status, BoxError> {
    let descriptor = POOL
        .get_message_by_name("google.rpc.Status")
        .ok_or("google.rpc.Status is in the pool")?;
    let rich = DynamicMessage::deserialize(descriptor, json.clone())?;
    let code = json["code"].as_i64().unwrap_or(2);
    let message = json["message"].as_str().unwrap_or_default().to_owned();
    Ok(tonic::Status::with_details(
        tonic::Code::from(i32::try_from(code).unwrap_or(2)),
        message,
        rich.encode_to_vec().into(),
    ))
}

/// A successful unary gRPC answer carrying `encoded`.
fn grpc_answer(encoded: &[u8]) -> http::Response<Body> {
    let mut frame = BytesMut::with_capacity(encoded.len() + 5);
    frame.put_u8(0);
    frame.put_u32(u32::try_from(encoded.len()).unwrap_or(u32::MAX));
    frame.put_slice(encoded);
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    let frames: Vec<Result<http_body::Frame<Bytes>, tonic::Status>> = vec![
        Ok(http_body::Frame::data(frame.freeze())),
        Ok(http_body::Frame::trailers(trailers)),
    ];
    let body = http_body_util::StreamBody::new(futures::stream::iter(frames));
    let mut answer = http::Response::new(Body::new(body));
    answer.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    answer
}
