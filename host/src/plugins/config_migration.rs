//! A saved config and a build that may not read it as it is: the build's instance from the
//! config as saved, or from what the build's `migrate_config` (plugin-api 1.1) makes of it.

use plugin_api::{ConnectorError, ConnectorErrorCode};

use crate::plugins::module::{PluginInstance, PluginModule};
use serde_json::Value;

/// An instance of `module` for a saved config, and the migrated config (normalized, to be
/// saved) when the saved one had to be migrated. The error is the build's refusal of the
/// saved config, or of what its migration made of it.
pub fn instantiate_or_migrate(
    module: &PluginModule,
    saved: &Value,
) -> Result<(PluginInstance, Option<Value>), ConnectorError> {
    let refusal = match module.instantiate(saved) {
        Ok(instance) => return Ok((instance, None)),
        Err(refusal) => refusal,
    };
    // Only a config the build cannot read is worth migrating; a failure to build is not.
    if refusal.code != ConnectorErrorCode::InvalidConfig {
        return Err(refusal);
    }
    let migrated = match module.migrate_config(saved) {
        Ok(Some(migrated)) => migrated,
        Ok(None) => return Err(refusal),
        Err(error) => {
            return Err(ConnectorError {
                message: format!("its migrate_config failed: {}", error.message),
                ..error
            })
        }
    };
    let refused_migration = |error: ConnectorError| ConnectorError {
        message: format!(
            "its migrate_config gave a config it refuses: {}",
            error.message
        ),
        ..error
    };
    let normalized = module
        .validate_config(&migrated)
        .map_err(refused_migration)?;
    let instance = module.instantiate(&normalized).map_err(refused_migration)?;
    Ok((instance, Some(normalized)))
}

/// The config fields an `invalid_config` error names (its `data.errors[].field`); a missing
/// field, which serde reports at `.`, by its name.
pub fn refused_fields(error: &ConnectorError) -> Vec<String> {
    let Some(errors) = error
        .data
        .as_ref()
        .and_then(|data| data.get("errors"))
        .and_then(|errors| errors.as_array())
    else {
        return Vec::new();
    };
    errors
        .iter()
        .filter_map(|entry| {
            let field = entry.get("field")?.as_str()?;
            let missing = entry
                .get("message")
                .and_then(|message| message.as_str())
                .and_then(|message| message.strip_prefix("missing field `"))
                .and_then(|rest| rest.split('`').next());
            match (field, missing) {
                ("." | "", Some(name)) => Some(name.to_owned()),
                ("." | "", None) => None,
                (field, _) => Some(field.to_owned()),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn refused_fields_are_named_and_a_missing_one_by_its_name() {
        let error = plugin_api::invalid_config_fields(vec![
            plugin_api::ConfigFieldError {
                field: ".".to_owned(),
                message: "missing field `region` at line 1 column 2".to_owned(),
            },
            plugin_api::ConfigFieldError {
                field: "templates[0].usageType".to_owned(),
                message: "unknown variant".to_owned(),
            },
            plugin_api::ConfigFieldError {
                field: ".".to_owned(),
                message: "invalid type: string, expected a map".to_owned(),
            },
        ]);
        assert_eq!(refused_fields(&error), ["region", "templates[0].usageType"]);
        assert!(refused_fields(&ConnectorError::general("x")).is_empty());
        let without_data = ConnectorError::invalid_config("x").with_data(json!({"errors": 1}));
        assert!(refused_fields(&without_data).is_empty());
    }
}
