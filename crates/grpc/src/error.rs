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
