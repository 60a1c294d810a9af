//! The HTTP API, one module per resource.

pub mod connector_factories;
pub mod connectors;
pub mod health;
pub mod messages;
pub mod metrics;
pub mod plugins;
pub mod protection;
pub mod verification_codes;
