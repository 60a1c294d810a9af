//! Logto's mock SMS connector: renders the template and appends the message to an outbox file
//! instead of sending it. The one bundled plugin that touches the filesystem, as a development
//! aid; it still performs no network I/O and spawns nothing.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::time::SystemTime;

use plugin_api::{
    english, find_template_for, render_template, ConnectorError, ConnectorMetadata, FormItem,
    FormItemType, SendProgress, SendReceipt, SmsConnector, SmsMessage, SmsTemplate, Step,
};
use serde::{Deserialize, Serialize};

pub const FACTORY_ID: &str = "mock-short-message-service";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MockSmsConfig {
    pub templates: Vec<SmsTemplate>,
    /// Missing: a file in the system temp dir; `null`: discard.
    #[serde(default = "default_outbox")]
    pub outbox: Option<PathBuf>,
}

fn default_outbox() -> Option<PathBuf> {
    Some(std::env::temp_dir().join("connector-host-mock-sms-outbox.jsonl"))
}

pub struct MockSms {
    config: MockSmsConfig,
}

/// One line of the outbox.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct OutboxEntry {
    pub to: String,
    #[serde(rename = "type")]
    pub template_type: String,
    pub content: String,
    pub payload: serde_json::Map<String, serde_json::Value>,
    pub at: String,
}

const CONFIG_TEMPLATE: &str = r#"{
  "templates": [
    {"usageType": "SignIn", "content": "Your sign-in verification code is {{code}}. The code will remain active for 10 minutes."},
    {"usageType": "Register", "content": "Your registration verification code is {{code}}. The code will remain active for 10 minutes."},
    {"usageType": "ForgotPassword", "content": "Your password reset verification code is {{code}}. The code will remain active for 10 minutes."},
    {"usageType": "Generic", "content": "Your verification code is {{code}}. The code will remain active for 10 minutes."}
  ]
}"#;

impl SmsConnector for MockSms {
    type Config = MockSmsConfig;

    fn metadata() -> ConnectorMetadata {
        ConnectorMetadata {
            id: FACTORY_ID.to_owned(),
            target: "mock-sms".to_owned(),
            name: english("Mock SMS Service"),
            description: english("Writes each message to a local outbox file instead of sending it. For development only."),
            readme: include_str!("../README.md").to_owned(),
            logo: Some(LOGO_SVG.to_owned()),
            logo_dark: None,
            config_template: CONFIG_TEMPLATE.to_owned(),
            form_items: vec![
                FormItem::new("templates", "Templates", FormItemType::Json)
                    .required()
                    .default_value(serde_json::from_str::<serde_json::Value>(CONFIG_TEMPLATE).map(|c| c["templates"].clone()).unwrap_or_default())
                    .description("One template per usage type; Generic serves the others. {{code}} is replaced by the code."),
                FormItem::new("outbox", "Outbox file", FormItemType::Text)
                    .placeholder("/tmp/connector-host-mock-sms-outbox.jsonl")
                    .description("Where messages are appended as JSON lines. Leave out for the temp dir; null to discard."),
            ],
        }
    }

    fn from_config(config: MockSmsConfig) -> Result<Self, ConnectorError> {
        if config.templates.is_empty() {
            return Err(plugin_api::invalid_config_fields(vec![
                plugin_api::ConfigFieldError {
                    field: "templates".to_owned(),
                    message: "at least one template is required".to_owned(),
                },
            ]));
        }
        if let Some(index) = config
            .templates
            .iter()
            .position(|template| template.content.trim().is_empty())
        {
            return Err(plugin_api::invalid_config_fields(vec![
                plugin_api::ConfigFieldError {
                    field: format!("templates[{index}].content"),
                    message: "template content is empty".to_owned(),
                },
            ]));
        }
        Ok(Self { config })
    }

    fn step(&self, message: &SmsMessage, _progress: SendProgress) -> Result<Step, ConnectorError> {
        let template = find_template_for(&self.config.templates, message)?;
        let content = render_template(&template.content, message.payload());
        let now = SystemTime::now();
        // The build's version is in the id, so an upgrade is visible in the receipts.
        let provider_message_id = format!(
            "mock-{}-{}",
            env!("CARGO_PKG_VERSION"),
            now.duration_since(SystemTime::UNIX_EPOCH)
                .map(|elapsed| elapsed.as_nanos())
                .unwrap_or_default()
        );
        if let Some(outbox) = &self.config.outbox {
            let entry = OutboxEntry {
                to: message.to().to_owned(),
                template_type: message.template_type().to_string(),
                content,
                payload: message.payload().to_json_map(),
                at: humantime::format_rfc3339_millis(now).to_string(),
            };
            append_line(outbox, &entry)?;
        }
        Ok(Step::done(SendReceipt::with_provider_message_id(
            provider_message_id,
        )))
    }
}

/// One `write` of the whole line on a file opened for append, so concurrent sends never
/// interleave their lines.
fn append_line(outbox: &PathBuf, entry: &OutboxEntry) -> Result<(), ConnectorError> {
    let mut line =
        serde_json::to_vec(entry).map_err(|error| ConnectorError::general(error.to_string()))?;
    line.push(b'\n');
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(outbox)
        .and_then(|mut file| file.write_all(&line))
        .map_err(|error| {
            ConnectorError::general(format!(
                "cannot append to outbox {}: {error}",
                outbox.display()
            ))
        })
}

const LOGO_SVG: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><rect x="3" y="5" width="18" height="14" rx="2" fill="none" stroke="#5d34f2" stroke-width="2"/><path d="M3 7l9 6 9-6" fill="none" stroke="#5d34f2" stroke-width="2"/></svg>"##;

plugin_api::export_sms_connector!(MockSms);

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_api::{run_send, ConnectorErrorCode, ConnectorModule, TemplateType};
    use serde_json::json;

    fn message(template_type: TemplateType) -> SmsMessage {
        SmsMessage::new(
            "+12015550123".to_owned(),
            template_type,
            json!({"code": "123456"}).as_object().cloned().unwrap(),
        )
    }

    fn outbox_path(test_name: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!(
            "mock-sms-test-{}-{test_name}.jsonl",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&path);
        path
    }

    #[test]
    fn metadata_is_valid_and_config_template_validates() {
        let metadata = MockSms::metadata();
        assert_eq!(metadata.problems(), Vec::<String>::new());
        let template: serde_json::Value = serde_json::from_str(&metadata.config_template).unwrap();
        let (normalized, _) = plugin_api::validate_config::<MockSms>(template).unwrap();
        assert!(normalized["outbox"]
            .as_str()
            .unwrap()
            .ends_with("connector-host-mock-sms-outbox.jsonl"));
    }

    #[test]
    fn null_outbox_is_kept_as_null() {
        let (normalized, _) = plugin_api::validate_config::<MockSms>(
            json!({"templates": [{"usageType": "Generic", "content": "{{code}}"}], "outbox": null}),
        )
        .unwrap();
        assert_eq!(normalized["outbox"], serde_json::Value::Null);
    }

    #[test]
    fn invalid_configs_name_the_field() {
        let missing = plugin_api::validate_config::<MockSms>(json!({}))
            .err()
            .unwrap();
        assert_eq!(missing.code, ConnectorErrorCode::InvalidConfig);
        assert!(
            missing.message.contains("missing field `templates`"),
            "{}",
            missing.message
        );
        let bad_type = plugin_api::validate_config::<MockSms>(
            json!({"templates": [{"usageType": "Login", "content": "x"}]}),
        )
        .err()
        .unwrap();
        assert_eq!(
            bad_type.data.unwrap()["errors"][0]["field"],
            "templates[0].usageType"
        );
        let empty = plugin_api::validate_config::<MockSms>(json!({"templates": []}))
            .err()
            .unwrap();
        assert_eq!(empty.data.unwrap()["errors"][0]["field"], "templates");
    }

    #[test]
    fn send_appends_rendered_line_with_generic_fallback() {
        let outbox = outbox_path("fallback");
        let config = json!({"templates": [{"usageType": "Generic", "content": "Code {{code}}"}], "outbox": outbox});
        let (_, connector) = plugin_api::validate_config::<MockSms>(config).unwrap();
        let receipt = run_send(
            &connector,
            &message(TemplateType::SignIn),
            |_| unreachable!("mock does no HTTP"),
            4,
        )
        .unwrap();
        assert!(receipt.provider_message_id().unwrap().starts_with("mock-"));
        let lines = std::fs::read_to_string(&outbox).unwrap();
        let entry: OutboxEntry = serde_json::from_str(lines.trim()).unwrap();
        assert_eq!(
            (
                entry.to.as_str(),
                entry.template_type.as_str(),
                entry.content.as_str()
            ),
            ("+12015550123", "SignIn", "Code 123456")
        );
        let _ = std::fs::remove_file(outbox);
    }

    #[test]
    fn missing_template_is_template_not_found() {
        let (_, connector) = plugin_api::validate_config::<MockSms>(
            json!({"templates": [{"usageType": "SignIn", "content": "x"}], "outbox": null}),
        )
        .unwrap();
        let error = connector
            .step(&message(TemplateType::Register), SendProgress::start())
            .unwrap_err();
        assert_eq!(error.code, ConnectorErrorCode::TemplateNotFound);
    }

    #[test]
    fn the_in_process_module_runs_the_whole_boundary() {
        let module = ConnectorModule::in_process::<MockSms>();
        let metadata = module.metadata().unwrap();
        assert_eq!(metadata.connector.id, FACTORY_ID);
        assert_eq!(metadata.plugin_api_version, plugin_api::PLUGIN_API_VERSION);
        let config =
            json!({"templates": [{"usageType": "Generic", "content": "{{code}}"}], "outbox": null});
        let instance = module.instantiate(&config).unwrap();
        let step = instance
            .step(&message(TemplateType::Generic), SendProgress::start())
            .unwrap();
        assert!(step
            .receipt()
            .and_then(SendReceipt::provider_message_id)
            .is_some());
        let error = module
            .validate_config(&json!({"templates": "nope"}))
            .unwrap_err();
        assert_eq!(error.code, ConnectorErrorCode::InvalidConfig);
    }
}
