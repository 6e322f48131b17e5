//! The error of every parse in the domain, in a module of its own so that
//! the type modules depend on it and it on nothing.

/// A value a client sent that breaks a rule of the domain; the message
/// says which field and what was wrong. The server answers it with
/// INVALID_ARGUMENT.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(String);

impl ParseError {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}
