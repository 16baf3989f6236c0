//! HTTP/JSON for every unary RPC, on the gRPC port: `POST /v1/{service}/{Method}` with the
//! request in the proto3 JSON mapping (`service` is the service's name without `Service`,
//! lower case: `kpi`, `ingest`, `mentorship`, `notification`). A server stream (WatchKpis)
//! answers as server-sent events; a client stream (IngestStream) is gRPC only.
//!
//! The descriptors the server is built from are the one source of truth: a request is decoded
//! with them, sent as a gRPC call through the same stack as every gRPC call (API key, scopes,
//! the handlers' own checks), and the answer encoded back. A refusal is its HTTP status and a
//! `google.rpc.Status` in JSON, details included (`BadRequest` field violations, `ErrorInfo`,
//! `RetryInfo`). `Idempotency-Key` fills an empty `request_id`. `/openapi.json` describes it
//! all (see [`crate::openapi`]).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use prost::Message as _;
use prost_reflect::{
    DescriptorPool, DynamicMessage, MessageDescriptor, MethodDescriptor, ReflectMessage as _, Value,
};
use tonic::Code;
use tonic::body::Body;
use tower::ServiceExt as _;

/// Largest JSON request accepted (the ingest batch limit's worth, with room for the JSON).
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Headers passed from the HTTP request to the gRPC call.
const FORWARDED: [&str; 4] = ["authorization", "traceparent", "tracestate", "grpc-timeout"];

/// The JSON path of every unary method of `services` (full names), and the pool they come
/// from (with `google.rpc`, for error details).
#[derive(Debug, Clone)]
pub struct JsonApi {
    pub pool: DescriptorPool,
    methods: Arc<HashMap<String, MethodDescriptor>>,
}

/// The short name a service is addressed by: `KpiService` → `kpi`.
pub fn short_name(service: &str) -> String {
    service
        .strip_suffix("Service")
        .unwrap_or(service)
        .to_lowercase()
}

impl JsonApi {
    /// The unary methods of `served` (full service names) in the Mentorstream descriptors.
    pub fn new(served: &[&str]) -> Result<Self, prost_reflect::DescriptorError> {
        let mut pool = DescriptorPool::global();
        pool.decode_file_descriptor_set(mentorstream_proto::FILE_DESCRIPTOR_SET)?;
        pool.decode_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)?;
        let mut methods = HashMap::new();
        for service in pool.services() {
            if !served.contains(&service.full_name()) {
                continue;
            }
            let short = short_name(service.name());
            for method in service.methods() {
                // A client stream has no one-request form; a server stream answers as SSE.
                if method.is_client_streaming() {
                    continue;
                }
                methods.insert(format!("/v1/{short}/{}", method.name()), method);
            }
        }
        Ok(Self {
            pool,
            methods: Arc::new(methods),
        })
    }

    /// Every (JSON path, method), sorted by path.
    pub fn methods(&self) -> Vec<(&str, &MethodDescriptor)> {
        let mut methods: Vec<_> = self
            .methods
            .iter()
            .map(|(path, method)| (path.as_str(), method))
            .collect();
        methods.sort_by_key(|(path, _)| *path);
        methods
    }

    /// Answers one HTTP request by calling `grpc` (the authenticated gRPC stack).
    pub async fn call<S>(&self, request: Request<axum::body::Body>, grpc: S) -> Response<Body>
    where
        S: tower::Service<
                Request<Body>,
                Response = Response<Body>,
                Error = std::convert::Infallible,
            > + Send,
        S::Future: Send,
    {
        match self.transcode(request, grpc).await {
            Ok(response) => response,
            Err(status) => self.error(&status),
        }
    }

    async fn transcode<S>(
        &self,
        request: Request<axum::body::Body>,
        grpc: S,
    ) -> Result<Response<Body>, tonic::Status>
    where
        S: tower::Service<
                Request<Body>,
                Response = Response<Body>,
                Error = std::convert::Infallible,
            > + Send,
        S::Future: Send,
    {
        let path = request.uri().path().to_owned();
        let method = self.methods.get(&path).ok_or_else(|| {
            tonic::Status::not_found(format!(
                "no JSON method `{path}`: POST /v1/{{service}}/{{Method}}; /openapi.json lists them"
            ))
        })?;
        if request.method() != http::Method::POST {
            return Err(tonic::Status::invalid_argument(format!(
                "{path} answers POST with a JSON body"
            )));
        }
        let (parts, body) = request.into_parts();
        let body = axum::body::to_bytes(body, MAX_BODY_BYTES)
            .await
            .map_err(|error| tonic::Status::invalid_argument(format!("request body: {error}")))?;
        let mut message = decode_json(&method.input(), &body)?;
        idempotency_key(&parts.headers, &mut message)?;
        let call = grpc_request(method, &parts.headers, &message.encode_to_vec());
        let response = grpc
            .oneshot(call)
            .await
            .unwrap_or_else(|never| match never {});
        if method.is_server_streaming() {
            return self.events(method.output(), response);
        }
        let (answer_parts, answer_body) = response.into_parts();
        let collected = answer_body
            .collect()
            .await
            .map_err(|error| tonic::Status::internal(format!("reading the answer: {error}")))?;
        let trailers = collected.trailers().cloned().unwrap_or_default();
        let status = tonic::Status::from_header_map(&trailers)
            .or_else(|| tonic::Status::from_header_map(&answer_parts.headers));
        if let Some(status) = status.filter(|status| status.code() != Code::Ok) {
            return Err(status);
        }
        let answer = decode_frame(&method.output(), collected.to_bytes())?;
        let json = serde_json::to_vec(&answer)
            .map_err(|error| tonic::Status::internal(format!("encoding the answer: {error}")))?;
        Ok(json_response(StatusCode::OK, json))
    }

    /// A server stream as server-sent events: each message `data: <json>`, and a refusal
    /// (at once, or ending the stream) `event: error` with its `google.rpc.Status`.
    fn events(
        &self,
        output: MessageDescriptor,
        response: Response<Body>,
    ) -> Result<Response<Body>, tonic::Status> {
        // A refusal before any message comes alone in the headers ("trailers only").
        if let Some(status) = tonic::Status::from_header_map(response.headers())
            .filter(|status| status.code() != Code::Ok)
        {
            return Err(status);
        }
        let api = self.clone();
        let frames = http_body_util::BodyStream::new(response.into_body());
        let events = futures::stream::unfold(
            (frames, BytesMut::new(), false),
            move |(mut frames, mut buffer, ended)| {
                let (api, output) = (api.clone(), output.clone());
                async move {
                    if ended {
                        return None;
                    }
                    loop {
                        if let Some(message) = take_frame(&mut buffer) {
                            let json = DynamicMessage::decode(output.clone(), message)
                                .map_err(|error| error.to_string())
                                .and_then(|message| {
                                    serde_json::to_value(&message)
                                        .map_err(|error| error.to_string())
                                });
                            let event = match json {
                                Ok(json) => sse("message", &json),
                                Err(error) => api.error_event(&tonic::Status::internal(format!(
                                    "transcoding a message: {error}"
                                ))),
                            };
                            return Some((Ok(event), (frames, buffer, false)));
                        }
                        let frame = match futures::StreamExt::next(&mut frames).await {
                            Some(Ok(frame)) => frame,
                            Some(Err(status)) => {
                                return Some((
                                    Ok(api.error_event(&status)),
                                    (frames, buffer, true),
                                ));
                            }
                            None => return None,
                        };
                        match frame.into_data() {
                            Ok(data) => buffer.extend_from_slice(&data),
                            Err(frame) => {
                                let status = frame
                                    .trailers_ref()
                                    .and_then(tonic::Status::from_header_map)
                                    .filter(|status| status.code() != Code::Ok)?;
                                return Some((
                                    Ok(api.error_event(&status)),
                                    (frames, buffer, true),
                                ));
                            }
                        }
                    }
                }
            },
        );
        let mut answer = Response::new(Body::new(http_body_util::StreamBody::new(
            futures::StreamExt::map(events, |event: Result<Bytes, tonic::Status>| {
                event.map(http_body::Frame::data)
            }),
        )));
        answer.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        answer.headers_mut().insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache"),
        );
        Ok(answer)
    }

    fn error_event(&self, status: &tonic::Status) -> Bytes {
        sse("error", &status_json(status))
    }

    /// A refusal as its HTTP status and a `google.rpc.Status` in JSON.
    pub fn error(&self, status: &tonic::Status) -> Response<Body> {
        refusal_response(status)
    }
}

/// The `google.rpc` descriptors, to decode a refusal's details into JSON.
static GOOGLE_RPC: std::sync::LazyLock<Option<MessageDescriptor>> =
    std::sync::LazyLock::new(|| {
        let mut pool = DescriptorPool::global();
        pool.decode_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
            .ok()?;
        pool.get_message_by_name("google.rpc.Status")
    });

/// A refusal as its HTTP status and a `google.rpc.Status` in JSON, with `Retry-After` on 503:
/// the one form every HTTP route of the system refuses in.
pub fn refusal_response(status: &tonic::Status) -> Response<Body> {
    let json = status_json(status);
    let mut response = json_response(http_status(status.code()), json.to_string().into());
    if status.code() == Code::Unavailable {
        response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// `status` as a `google.rpc.Status` in JSON, its details decoded.
fn status_json(status: &tonic::Status) -> serde_json::Value {
    let mut json = serde_json::json!({
        "code": i32::from(status.code()),
        "message": status.message(),
        "details": [],
    });
    if let Some(rich) = GOOGLE_RPC
        .clone()
        .and_then(|descriptor| DynamicMessage::decode(descriptor, status.details()).ok())
        .and_then(|rich| serde_json::to_value(&rich).ok())
    {
        // An empty `details` is omitted by the JSON mapping; the document promises an array.
        if let Some(details) = rich.get("details") {
            json["details"] = details.clone();
        }
    }
    json
}

/// `body` (JSON) as a 200 answer.
pub fn json_ok(body: &serde_json::Value) -> Response<Body> {
    json_response(StatusCode::OK, body.to_string().into())
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response<Body> {
    let mut response = Response::new(Body::new(http_body_util::Full::new(Bytes::from(body))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The HTTP status of a gRPC code (as google.api and grpc-gateway map them).
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::FailedPrecondition => StatusCode::BAD_REQUEST,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A request body in the proto3 JSON mapping; an empty body is the empty message.
fn decode_json(
    descriptor: &MessageDescriptor,
    body: &[u8],
) -> Result<DynamicMessage, tonic::Status> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(DynamicMessage::new(descriptor.clone()));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let message = DynamicMessage::deserialize(descriptor.clone(), &mut deserializer)
        .and_then(|message| deserializer.end().map(|()| message))
        .map_err(|error| {
            crate::field_violation(
                "body",
                format!("is not a {}: {error}", descriptor.full_name()),
            )
        })?;
    Ok(message)
}

/// `Idempotency-Key` as the request's `request_id`, when it has one and the body left it empty
/// (a different one in the body is refused).
fn idempotency_key(headers: &HeaderMap, message: &mut DynamicMessage) -> Result<(), tonic::Status> {
    let Some(key) = headers.get("idempotency-key") else {
        return Ok(());
    };
    let key = key
        .to_str()
        .map_err(|_| crate::field_violation("Idempotency-Key", "must be visible ASCII"))?;
    // Methods without a request_id are safe to repeat as they are (Ingest: by event ids).
    let Some(field) = message.descriptor().get_field_by_name("request_id") else {
        return Ok(());
    };
    match message.get_field(&field).as_str() {
        Some("") | None => message.set_field(&field, Value::String(key.to_owned())),
        Some(given) if given == key => {}
        Some(_) => {
            return Err(crate::field_violation(
                "Idempotency-Key",
                "differs from the body's request_id",
            ));
        }
    }
    Ok(())
}

/// The gRPC request for `method` carrying `encoded`, with the caller's forwarded headers.
fn grpc_request(method: &MethodDescriptor, headers: &HeaderMap, encoded: &[u8]) -> Request<Body> {
    let mut frame = BytesMut::with_capacity(encoded.len() + 5);
    frame.put_u8(0);
    frame.put_u32(u32::try_from(encoded.len()).unwrap_or(u32::MAX));
    frame.put_slice(encoded);
    let mut request = Request::new(Body::new(http_body_util::Full::new(frame.freeze())));
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = format!("/{}/{}", method.parent_service().full_name(), method.name())
        .parse()
        .unwrap_or_default();
    *request.version_mut() = http::Version::HTTP_2;
    let forwarded = request.headers_mut();
    forwarded.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    forwarded.insert(http::header::TE, HeaderValue::from_static("trailers"));
    for name in FORWARDED {
        if let Some(value) = headers.get(name) {
            forwarded.insert(name, value.clone());
        }
    }
    request
}

/// One server-sent event.
fn sse(event: &str, data: &serde_json::Value) -> Bytes {
    Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}

/// The next whole uncompressed gRPC message in `buffer`, taken out of it.
fn take_frame(buffer: &mut BytesMut) -> Option<Bytes> {
    let length = usize::try_from(u32::from_be_bytes(buffer.get(1..5)?.try_into().ok()?)).ok()?;
    if buffer.len() < 5 + length {
        return None;
    }
    let mut frame = buffer.split_to(5 + length).freeze();
    frame.advance(5);
    Some(frame)
}

/// The one message of a unary gRPC answer.
fn decode_frame(
    descriptor: &MessageDescriptor,
    mut data: Bytes,
) -> Result<DynamicMessage, tonic::Status> {
    if data.len() < 5 || data[0] != 0 {
        return Err(tonic::Status::internal(
            "the answer is not one uncompressed gRPC message",
        ));
    }
    data.advance(1);
    let length = usize::try_from(data.get_u32()).unwrap_or(usize::MAX);
    let message = data
        .get(..length)
        .ok_or_else(|| tonic::Status::internal("a truncated answer"))?;
    DynamicMessage::decode(descriptor.clone(), message)
        .map_err(|error| tonic::Status::internal(format!("decoding the answer: {error}")))
}
