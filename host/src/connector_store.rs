//! Saved connectors: the part of the store boundary the management routes use.
//!
//! The store keeps every connector, live or retired, with its config. Making one connector
//! live retires the current one in the same transaction, so a kill -9 at any moment leaves
//! either the old state or the new one, never two live connectors.

use crate::store::StoreError;

/// A saved connector.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectorRecord {
    pub id: String,
    pub factory_id: String,
    pub config: serde_json::Value,
    /// Per-connector overrides of the factory's metadata (Logto's `metadata`: name, logo, ...).
    pub metadata: serde_json::Value,
    pub enabled: bool,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    pub updated_at: i64,
}

/// A connector to create; it becomes the live one.
#[derive(Debug, Clone)]
pub struct NewConnector {
    pub id: String,
    pub factory_id: String,
    pub config: serde_json::Value,
    pub metadata: serde_json::Value,
}

/// The store boundary. Every method is one transaction.
pub trait ConnectorStore: Send + Sync {
    /// All connectors, or only live (`Some(true)`) or retired (`Some(false)`) ones, oldest first.
    fn list(&self, enabled: Option<bool>) -> Result<Vec<ConnectorRecord>, StoreError>;
    fn get(&self, id: &str) -> Result<Option<ConnectorRecord>, StoreError>;
    fn live(&self) -> Result<Option<ConnectorRecord>, StoreError>;
    /// Saves a new connector as the live one, retiring the current live one.
    fn insert_live(&self, connector: NewConnector) -> Result<ConnectorRecord, StoreError>;
    /// Makes a saved connector live, retiring the current one. `None` for an unknown id.
    fn enable(&self, id: &str) -> Result<Option<ConnectorRecord>, StoreError>;
    /// Replaces config and metadata. `None` for an unknown id.
    fn update(
        &self,
        id: &str,
        config: serde_json::Value,
        metadata: serde_json::Value,
    ) -> Result<Option<ConnectorRecord>, StoreError>;
    /// `false` for an unknown id.
    fn delete(&self, id: &str) -> Result<bool, StoreError>;
}
