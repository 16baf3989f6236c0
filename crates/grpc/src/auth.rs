//! API-key authentication for every RPC except health and reflection.
//!
//! The layer resolves `authorization: Bearer <key>` to a [`Principal`] (or answers
//! UNAUTHENTICATED) and stores it in the request extensions; handlers then call
//! [`authorize`] with the scope the RPC needs (PERMISSION_DENIED when the key lacks it).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use mentorstream_tenancy::{
    AuthError, Authenticate, Principal, Scope, TenancyError, Tenant, Tenants,
};
use tonic::Status;
use tonic::body::Body;
use tower::{Layer, Service};
use tracing::Instrument;

/// Paths that answer without a key: probes and tooling must work before any key exists, and a
/// chat-bot button's action token is its own credential (mentorship's ActionService).
const PUBLIC_PREFIXES: &[&str] = &[
    "/mentorstream.mentorship.v1.ActionService/",
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// HTTP/JSON paths: their handler calls the gRPC stack with the caller's key, so the key is
/// checked there and a refusal comes back as JSON (crate::json).
const TRANSCODED_PREFIXES: [&str; 3] = ["/v1/", "/openapi.json", crate::server::DESCRIPTORS_PATH];

/// Dashboard pages and their data: a signed dashboard link is their credential, checked by
/// their handlers (mentorship's `dashboard`).
const LINK_PREFIXES: [&str; 1] = ["/dashboard/"];

/// Whether the gRPC method at `path` (`/package.Service/Method`) answers without an API key.
pub fn is_public(path: &str) -> bool {
    PUBLIC_PREFIXES
        .iter()
        .any(|prefix| path.starts_with(prefix))
}

#[derive(Clone)]
pub struct AuthLayer {
    authenticator: Arc<dyn Authenticate>,
}

impl std::fmt::Debug for AuthLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthLayer").finish_non_exhaustive()
    }
}

impl AuthLayer {
    pub fn new(authenticator: Arc<dyn Authenticate>) -> Self {
        Self { authenticator }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            authenticator: self.authenticator.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    authenticator: Arc<dyn Authenticate>,
}

impl<S> std::fmt::Debug for AuthService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthService").finish_non_exhaustive()
    }
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, B> Service<Request<B>> for AuthService<S>
where
    S: Service<Request<B>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // The clone that was made ready must serve this call; keep a fresh clone for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let authenticator = self.authenticator.clone();
        let span = tracing::info_span!(
            "grpc",
            rpc.method = %request.uri().path(),
            tenant_id = tracing::field::Empty,
        );
        mentorstream_telemetry::propagation::set_parent_from(
            &span,
            &HeaderExtractor(request.headers()),
        );
        let public = PUBLIC_PREFIXES
            .iter()
            .chain(&TRANSCODED_PREFIXES)
            .chain(&LINK_PREFIXES)
            .any(|prefix| request.uri().path().starts_with(prefix));
        Box::pin(
            async move {
                if !public {
                    let presented = bearer_key(request.headers());
                    let resolved = match presented {
                        Ok(key) => authenticator.authenticate(&key).await,
                        Err(error) => Err(error),
                    };
                    match resolved {
                        Ok(principal) => {
                            tracing::Span::current()
                                .record("tenant_id", principal.tenant_id.as_str());
                            request.extensions_mut().insert(principal);
                        }
                        Err(error) => {
                            let status = match error {
                                AuthError::Unavailable(_) => {
                                    tracing::error!(%error, "API key store unavailable");
                                    crate::retry_later(
                                        "cannot check the API key now; retry",
                                        "AUTH_UNAVAILABLE",
                                        crate::RETRY_AFTER,
                                        [],
                                    )
                                }
                                _ => Status::unauthenticated(error.to_string()),
                            };
                            return Ok(status.into_http());
                        }
                    }
                }
                inner.call(request).await
            }
            .instrument(span),
        )
    }
}

/// The key of `authorization: Bearer <key>`.
fn bearer_key(headers: &http::HeaderMap) -> Result<String, AuthError> {
    let header = headers
        .get(http::header::AUTHORIZATION)
        .ok_or(AuthError::Missing)?;
    header
        .to_str()
        .ok()
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|key| !key.is_empty())
        .map(str::to_owned)
        .ok_or(AuthError::MalformedHeader)
}

/// The settings of the caller's tenant (cached): PERMISSION_DENIED when the key's tenant is
/// gone, UNAVAILABLE when the control database cannot be read.
pub async fn caller_tenant(tenants: &Tenants, principal: &Principal) -> Result<Tenant, Status> {
    match tenants.cached_tenant(&principal.tenant_id).await {
        Ok(tenant) => Ok(tenant),
        Err(TenancyError::UnknownTenant(_)) => Err(Status::permission_denied(
            "the tenant of this API key no longer exists",
        )),
        Err(error) => {
            tracing::warn!(%error, "cannot read the caller's tenant");
            Err(crate::retry_later(
                "cannot read the tenant's settings right now; retry",
                "TENANT_UNAVAILABLE",
                crate::RETRY_AFTER,
                [],
            ))
        }
    }
}

/// The caller's principal, if its key carries `scope`.
pub fn authorize<T>(request: &tonic::Request<T>, scope: Scope) -> Result<Principal, Status> {
    let principal = request
        .extensions()
        .get::<Principal>()
        .ok_or_else(|| Status::unauthenticated(AuthError::Missing.to_string()))?;
    if principal.scopes.contains(scope) {
        Ok(principal.clone())
    } else {
        Err(Status::permission_denied(format!(
            "API key {} lacks the `{scope}` scope (it has: {})",
            principal.key_id, principal.scopes
        )))
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl opentelemetry::propagation::Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}
