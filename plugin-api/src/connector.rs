//! The trait a vendor implements.

use serde::{de::DeserializeOwned, Serialize};

use crate::{ConnectorError, ConnectorMetadata, SendProgress, SmsMessage, Step};

/// An SMS connector, written in plain Rust. Export it with [`crate::export_sms_connector!`].
///
/// The host validates a config once (`validate_config`), builds one connector value from it
/// (`from_config`) and calls `step` for every message, from many threads at once.
///
/// A connector does no I/O: `step` turns the message into an [`crate::HttpRequest`] and a
/// response into a [`crate::SendReceipt`] or a [`ConnectorError`]. It never opens a socket,
/// spawns a thread or starts a runtime. A panic anywhere becomes a `general` error.
pub trait SmsConnector: Send + Sync + Sized + 'static {
    /// The config, parsed from the JSON the operator saved. Field-level errors from parsing
    /// are reported to the operator as `invalid_config` with their paths.
    type Config: DeserializeOwned + Serialize;

    fn metadata() -> ConnectorMetadata;

    /// Builds the connector from a parsed config; reject values serde could not (a base URL
    /// without a scheme, an empty template list) with `ConnectorError::invalid_config`.
    fn from_config(config: Self::Config) -> Result<Self, ConnectorError>;

    /// Turns a config saved for an older build of this connector into one this build accepts,
    /// when [`Self::Config`] no longer reads it (a field renamed, a required field added). The
    /// host calls it only when this build refuses the saved config; `Ok(None)` (the default)
    /// means "no migration", and the upgrade is refused with the old build still serving. A
    /// new optional field needs no migration: give it `#[serde(default)]`. Added in 1.1.
    fn migrate_config(
        saved: serde_json::Value,
    ) -> Result<Option<serde_json::Value>, ConnectorError> {
        let _ = saved;
        Ok(None)
    }

    /// Advances one send. See [`crate::exchange`] for the protocol.
    fn step(
        &self,
        message: &SmsMessage,
        progress: SendProgress<'_>,
    ) -> Result<Step, ConnectorError>;

    /// Whether this connector reads delivery reports, and how it authenticates them; shown to
    /// operators. `None` (the default): it takes none.
    fn delivery_reports() -> Option<crate::DeliveryReportSupport> {
        None
    }

    /// Reads a delivery report the provider sent to [`SendProgress::delivery_report_url`]:
    /// check its signature first, with this connector's own secret
    /// ([`crate::DeliveryReportError::BadSignature`] when it is missing or wrong), then give
    /// each message's status. The host has checked its own token in the URL already. The
    /// default takes no reports.
    fn parse_delivery_report(
        &self,
        report: &crate::InboundReport,
    ) -> Result<Vec<crate::DeliveryReport>, crate::DeliveryReportError> {
        let _ = report;
        Err(crate::DeliveryReportError::Unsupported)
    }
}

/// One field-level problem of a config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ConfigFieldError {
    /// The path of the field, such as `templates[0].usageType`; `.` for the config itself.
    pub field: String,
    pub message: String,
}

/// Parses a config, turning the first serde error into an `invalid_config` error whose data is
/// `{"errors": [{"field", "message"}]}`.
pub fn parse_config<Config: DeserializeOwned>(
    config: serde_json::Value,
) -> Result<Config, ConnectorError> {
    serde_path_to_error::deserialize(config).map_err(|error| {
        let message = error.inner().to_string();
        let field = field_path(&error.path().to_string(), &message);
        invalid_config_fields(vec![ConfigFieldError { field, message }])
    })
}

/// The path an operator looks for. serde reports a missing field at the object that lacks it
/// (`templates[0]`, or `.` at the root), naming the field only in its message: the field's own
/// path is that object's path plus the name (`templates[0].usageType`, `accountSid`).
fn field_path(path: &str, message: &str) -> String {
    let missing_field = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(name, _)| name);
    match missing_field {
        Some(name) if path == "." => name.to_owned(),
        Some(name) => format!("{path}.{name}"),
        None => path.to_owned(),
    }
}

/// An `invalid_config` error listing field problems.
pub fn invalid_config_fields(errors: Vec<ConfigFieldError>) -> ConnectorError {
    let summary = errors
        .iter()
        .map(|error| format!("{}: {}", error.field, error.message))
        .collect::<Vec<_>>()
        .join("; ");
    ConnectorError::invalid_config(format!("invalid config: {summary}"))
        .with_data(serde_json::json!({ "errors": errors }))
}

/// Validates a config the way the host does: parse, build, and return the normalized JSON
/// (defaults filled in, unknown shape rejected). Also what vendors call in unit tests.
pub fn validate_config<Connector: SmsConnector>(
    config: serde_json::Value,
) -> Result<(serde_json::Value, Connector), ConnectorError> {
    let parsed: Connector::Config = parse_config(config)?;
    let normalized = serde_json::to_value(&parsed).map_err(|error| {
        ConnectorError::general(format!("config does not serialize back to JSON: {error}"))
    })?;
    let connector = Connector::from_config(parsed)?;
    Ok((normalized, connector))
}

/// Drives a send to completion with a caller-supplied transport: for vendors' unit tests, which
/// answer each request from a table instead of the network.
pub fn run_send<Connector: SmsConnector>(
    connector: &Connector,
    message: &SmsMessage,
    mut perform: impl FnMut(&crate::HttpRequest) -> crate::HttpResponse,
    max_steps: usize,
) -> Result<crate::SendReceipt, ConnectorError> {
    let mut step = connector.step(message, SendProgress::start())?;
    let mut steps_taken = 1;
    loop {
        let response = match step.request() {
            None => return Ok(step.into_receipt().unwrap_or_default()),
            Some(request) if steps_taken < max_steps => perform(request),
            Some(_) => {
                return Err(ConnectorError::general(format!(
                    "send did not finish within {max_steps} steps"
                )))
            }
        };
        let state = step.state()?;
        step = connector.step(message, SendProgress::after(state, &response))?;
        steps_taken += 1;
    }
}

/// Checks a base URL from a config: `http://` or `https://`, with a host. Returns it without a
/// trailing slash, ready for `format!("{base}/path")`.
pub fn require_http_url(field: &str, value: &str) -> Result<String, ConnectorError> {
    let trimmed = value.trim().trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"));
    match rest {
        Some(rest)
            if !rest.is_empty()
                && !rest.starts_with('/')
                && !rest.contains(char::is_whitespace) =>
        {
            Ok(trimmed.to_owned())
        }
        _ => Err(invalid_config_fields(vec![ConfigFieldError {
            field: field.to_owned(),
            message: format!("{value:?} is not an http:// or https:// URL"),
        }])),
    }
}

/// Requires a non-blank string field.
pub fn require_non_empty(field: &str, value: &str) -> Result<(), ConnectorError> {
    if value.trim().is_empty() {
        return Err(invalid_config_fields(vec![ConfigFieldError {
            field: field.to_owned(),
            message: "must not be empty".to_owned(),
        }]));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_checked_and_trimmed() {
        assert_eq!(
            require_http_url("baseUrl", "https://api.twilio.com/").unwrap(),
            "https://api.twilio.com"
        );
        assert_eq!(
            require_http_url("baseUrl", "http://127.0.0.1:4010").unwrap(),
            "http://127.0.0.1:4010"
        );
        for bad in [
            "",
            "api.twilio.com",
            "ftp://x",
            "https://",
            "http:///path",
            "https://a b",
        ] {
            let error = require_http_url("baseUrl", bad).unwrap_err();
            assert_eq!(
                error.data.unwrap()["errors"][0]["field"],
                "baseUrl",
                "{bad}"
            );
        }
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    #[allow(dead_code)]
    struct SampleConfig {
        account_sid: String,
        templates: Vec<crate::SmsTemplate>,
    }

    fn refused_field(config: serde_json::Value) -> (String, String) {
        let error = parse_config::<SampleConfig>(config).unwrap_err();
        let data = error.data.unwrap();
        let problem = &data["errors"][0];
        (
            problem["field"].as_str().unwrap().to_owned(),
            problem["message"].as_str().unwrap().to_owned(),
        )
    }

    #[test]
    fn a_missing_field_is_named_by_its_own_path() {
        let (field, message) = refused_field(serde_json::json!({"templates": []}));
        assert_eq!(field, "accountSid");
        assert_eq!(message, "missing field `accountSid`");
        let (field, _) = refused_field(serde_json::json!({
            "accountSid": "AC1",
            "templates": [{"usageType": "Generic", "content": "{{code}}"}, {"content": "x"}]
        }));
        assert_eq!(field, "templates[1].usageType");
    }

    #[test]
    fn other_problems_keep_the_path_serde_reports() {
        let (field, _) = refused_field(serde_json::json!({"accountSid": 7, "templates": []}));
        assert_eq!(field, "accountSid");
        let (field, message) = refused_field(serde_json::json!({
            "accountSid": "AC1", "templates": [], "extra": true
        }));
        assert_eq!(field, "extra");
        assert!(message.starts_with("unknown field `extra`"), "{message}");
        let (field, _) = refused_field(serde_json::json!([]));
        assert_eq!(field, ".");
    }
}
