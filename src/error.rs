//! The server's error type, and how each case reaches a client.
//!
//! The layers below have their own errors (`chat_domain::ParseError`,
//! `chat_store::Error`, `chat_fanout::hub::RegisterError`); they become
//! gRPC codes here, in one `From` each, and nowhere else.
//!
//! Client-facing cases carry a message that says what was wrong; internal
//! failures are logged with their cause chain and reach the client only as
//! "internal error".

use tonic::{Code, Status};

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    ResourceExhausted(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("database error")]
    Database(#[source] chat_store::Error),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidArgument(message.into())
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::Unauthenticated(message.into())
    }

    pub fn denied(message: impl Into<String>) -> Self {
        Self::PermissionDenied(message.into())
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::NotFound(message.into())
    }

    /// The gRPC code a client sees for this error.
    pub fn code(&self) -> Code {
        match self {
            Self::InvalidArgument(_) => Code::InvalidArgument,
            Self::Unauthenticated(_) => Code::Unauthenticated,
            Self::PermissionDenied(_) => Code::PermissionDenied,
            Self::NotFound(_) => Code::NotFound,
            Self::AlreadyExists(_) => Code::AlreadyExists,
            Self::FailedPrecondition(_) => Code::FailedPrecondition,
            Self::ResourceExhausted(_) => Code::ResourceExhausted,
            Self::Unavailable(_) => Code::Unavailable,
            Self::Database(_) | Self::Internal(_) => Code::Internal,
        }
    }

    /// The message a client sees: the reason for client errors, a fixed
    /// phrase for internal ones (which are logged here, with their causes).
    pub fn client_message(&self) -> String {
        match self {
            Self::Database(_) | Self::Internal(_) => {
                tracing::error!(error = ?anyhow_chain(self), "request failed");
                "internal error".to_owned()
            }
            other => other.to_string(),
        }
    }
}

fn anyhow_chain(error: &Error) -> String {
    let mut out = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

impl From<chat_domain::ParseError> for Error {
    fn from(error: chat_domain::ParseError) -> Self {
        Self::InvalidArgument(error.to_string())
    }
}

impl From<chat_store::Error> for Error {
    fn from(error: chat_store::Error) -> Self {
        use chat_store::Error as Store;
        match error {
            Store::Taken(message) => Self::AlreadyExists(message),
            Store::NotFound(message) => Self::NotFound(message),
            Store::Forbidden(message) => Self::PermissionDenied(message),
            Store::Refused(message) => Self::FailedPrecondition(message),
            Store::Invalid(message) => Self::InvalidArgument(message),
            Store::LimitReached(message) => Self::ResourceExhausted(message),
            Store::BadUrl(message) => Self::InvalidArgument(message),
            Store::Database(_) | Store::Internal(_) => Self::Database(error),
        }
    }
}

impl From<chat_fanout::hub::RegisterError> for Error {
    fn from(error: chat_fanout::hub::RegisterError) -> Self {
        use chat_fanout::hub::RegisterError;
        match error {
            RegisterError::ShuttingDown => Self::Unavailable(error.to_string()),
            RegisterError::TooManyForSession(_) | RegisterError::TooManyForUser(_) => {
                Self::ResourceExhausted(error.to_string())
            }
        }
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        Status::new(error.code(), error.client_message())
    }
}
