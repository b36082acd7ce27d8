//! The one mapping from domain errors to gRPC statuses. Every variant is matched
//! explicitly; internal causes are logged here and never reach the caller.

use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

use crate::domain::model::Error;

/// What a caller is told to wait when the hashing queue or the reset queue is full.
const BUSY_RETRY: Duration = Duration::from_secs(1);

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        match error {
            Error::InvalidArgument { field, reason } => Status::with_error_details(
                Code::InvalidArgument,
                format!("{field}: {reason}"),
                ErrorDetails::with_bad_request_violation(field, reason),
            ),
            Error::WeakPassword { field, violations } => {
                let violations: Vec<FieldViolation> = violations
                    .into_iter()
                    .map(|v| FieldViolation {
                        reason: v.rule.to_ascii_uppercase(),
                        ..FieldViolation::new(field, v.description)
                    })
                    .collect();
                Status::with_error_details(
                    Code::InvalidArgument,
                    format!("{field} does not meet the password policy"),
                    ErrorDetails::with_bad_request(violations),
                )
            }
            Error::TokenNotFound => Status::not_found("token is invalid or has expired"),
            Error::AccountNotFound => Status::not_found("account not found"),
            Error::AccountExists => {
                Status::already_exists("an account with this e-mail, username or phone already exists")
            }
            Error::AccountInactive => Status::failed_precondition("the account is inactive"),
            Error::PasswordAlreadySet => Status::failed_precondition(
                "the account already has a usable password: an account-setup token is only for accounts without one",
            ),
            Error::IncorrectPassword { field } => Status::with_error_details(
                Code::InvalidArgument,
                format!("{field} is incorrect"),
                ErrorDetails::with_bad_request(vec![FieldViolation {
                    reason: "INCORRECT".to_owned(),
                    ..FieldViolation::new(field, "is incorrect")
                }]),
            ),
            Error::PasswordChangedConcurrently => {
                Status::aborted("the password changed while this request was checked; try again")
            }
            Error::RateLimited { retry_after } => Status::with_error_details(
                Code::ResourceExhausted,
                "too many requests from this client; retry later",
                ErrorDetails::with_retry_info(Some(retry_after)),
            ),
            Error::HashingBusy => Status::with_error_details(
                Code::ResourceExhausted,
                "password hashing is at capacity; retry later",
                ErrorDetails::with_retry_info(Some(BUSY_RETRY)),
            ),
            Error::ResetBusy => Status::with_error_details(
                Code::ResourceExhausted,
                "the service is busy; retry later",
                ErrorDetails::with_retry_info(Some(BUSY_RETRY)),
            ),
            Error::CursorExpired => {
                Status::out_of_range("after_sequence is older than the retained events; resubscribe without it")
            }
            Error::Unavailable(cause) => {
                tracing::warn!(error = format!("{cause:#}"), "database unavailable");
                Status::unavailable("the service is temporarily unavailable")
            }
            Error::Internal(cause) => {
                tracing::error!(error = format!("{cause:#}"), "internal error");
                Status::internal("internal error")
            }
        }
    }
}
