//! The store boundary: what the routes need saved, as blocking traits, and the error they
//! share. The routes reach it through `spawn_blocking` (`AppState::with_store`), so a store on
//! a blocking client (SQLite now, PostgreSQL for several hosts later) plugs in without
//! touching them. Every trait method is one transaction.

pub use crate::code_store::{NewCode, VerificationCodeStore, VerifyOutcome};
pub use crate::connector_store::{ConnectorRecord, ConnectorStore, NewConnector};

/// Everything the host keeps: connectors and verification codes.
pub trait Store: ConnectorStore + VerificationCodeStore {}

impl<T: ConnectorStore + VerificationCodeStore> Store for T {}

#[derive(Debug, thiserror::Error)]
#[error("store error: {0}")]
pub struct StoreError(pub String);

impl From<serde_json::Error> for StoreError {
    fn from(error: serde_json::Error) -> Self {
        StoreError(format!("stored JSON is invalid: {error}"))
    }
}
