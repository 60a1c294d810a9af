//! The HTTP API, one module per resource.

pub mod connector_factories;
pub mod health;
pub mod plugins;
