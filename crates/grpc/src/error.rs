//! Mapping of library errors to `tonic::Status` with `google.rpc` details.
//!
//! Library crates keep their own `thiserror` enums and implement [`ServiceError`] to say which
//! gRPC code each variant is. Internal errors are logged in full and answered with a generic
//! message, so no database or broker detail leaks to callers.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// An error a service can answer with.
pub trait ServiceError: std::error::Error {
    fn code(&self) -> Code;

    /// Field violations, for INVALID_ARGUMENT.
    fn violations(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    fn into_status(self) -> Status
    where
        Self: Sized,
    {
        let code = self.code();
        match code {
            Code::Internal | Code::Unknown | Code::DataLoss => {
                tracing::error!(error = %self, "internal error");
                Status::new(code, "internal error; see the service log")
            }
            Code::InvalidArgument => invalid_argument(self.to_string(), self.violations()),
            _ => Status::new(code, self.to_string()),
        }
    }
}

/// INVALID_ARGUMENT with a `google.rpc.BadRequest` listing each violated field.
pub fn invalid_argument(
    message: impl Into<String>,
    violations: impl IntoIterator<Item = (String, String)>,
) -> Status {
    let mut details = ErrorDetails::new();
    for (field, description) in violations {
        details.add_bad_request_violation(field, description);
    }
    Status::with_error_details(Code::InvalidArgument, message, details)
}

/// One field violation, for [`invalid_argument`].
pub fn field_violation(field: impl Into<String>, description: impl Into<String>) -> Status {
    let field = field.into();
    let description = description.into();
    let message = format!("{field}: {description}");
    invalid_argument(message, [(field, description)])
}

/// What an UNAVAILABLE answer tells the caller to wait before retrying.
pub const RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// The `domain` of every `google.rpc.ErrorInfo` this system sends.
pub const ERROR_DOMAIN: &str = "mentorstream.dev";

/// A refusal with a stable machine-readable reason (`google.rpc.ErrorInfo`), for callers that
/// must tell one refusal from another without parsing the message.
pub fn refusal<'a>(
    code: Code,
    reason: &str,
    metadata: impl IntoIterator<Item = (&'a str, &'a str)>,
    message: impl Into<String>,
) -> Status {
    Status::with_error_details(code, message, error_info(reason, metadata))
}

/// UNAVAILABLE that will succeed on retry: `google.rpc.ErrorInfo` with a stable reason and
/// `google.rpc.RetryInfo` saying when to retry.
pub fn retry_later<'a>(
    message: impl Into<String>,
    reason: &str,
    retry_after: std::time::Duration,
    metadata: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Status {
    let mut details = error_info(reason, metadata);
    details.set_retry_info(Some(retry_after));
    Status::with_error_details(Code::Unavailable, message, details)
}

fn error_info<'a>(
    reason: &str,
    metadata: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> ErrorDetails {
    let metadata: std::collections::HashMap<String, String> = metadata
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect();
    ErrorDetails::with_error_info(reason, ERROR_DOMAIN, metadata)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_argument_carries_field_violations() {
        let status = invalid_argument(
            "2 fields are invalid",
            [
                (
                    "events[0].source".to_owned(),
                    "must not be empty".to_owned(),
                ),
                ("events[1].partner_id".to_owned(), "too long".to_owned()),
            ],
        );
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "2 fields are invalid");
        let details = status.get_error_details();
        let bad_request = details.bad_request().expect("bad request details");
        let fields: Vec<(&str, &str)> = bad_request
            .field_violations
            .iter()
            .map(|v| (v.field.as_str(), v.description.as_str()))
            .collect();
        assert_eq!(
            fields,
            [
                ("events[0].source", "must not be empty"),
                ("events[1].partner_id", "too long")
            ]
        );
    }

    #[test]
    fn retryable_refusals_carry_their_reason_and_delay() {
        let status = retry_later(
            "not yet",
            "PARTNER_NOT_YET_KNOWN",
            std::time::Duration::from_secs(1),
            [("partner_id", "p1")],
        );
        assert_eq!(status.code(), Code::Unavailable);
        let details = status.get_error_details();
        let info = details.error_info().expect("error info");
        assert_eq!(info.reason, "PARTNER_NOT_YET_KNOWN");
        assert_eq!(info.domain, ERROR_DOMAIN);
        assert_eq!(info.metadata["partner_id"], "p1");
        let retry = details.retry_info().expect("retry info");
        assert_eq!(retry.retry_delay, Some(std::time::Duration::from_secs(1)));
        let refused = refusal(Code::FailedPrecondition, "GROUP_FULL", [], "no");
        assert_eq!(
            refused
                .get_error_details()
                .error_info()
                .expect("info")
                .reason,
            "GROUP_FULL"
        );
        assert!(refused.get_error_details().retry_info().is_none());
    }

    #[derive(Debug, thiserror::Error)]
    #[error("connection reset by db-7.internal")]
    struct LeakyError;

    impl ServiceError for LeakyError {
        fn code(&self) -> Code {
            Code::Internal
        }
    }

    #[test]
    fn internal_errors_do_not_leak_details() {
        let status = LeakyError.into_status();
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(status.message(), "internal error; see the service log");
    }
}
