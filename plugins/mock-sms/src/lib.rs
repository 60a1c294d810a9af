//! Logto's mock SMS connector: renders the template and hands the message to the host's
//! outbox instead of sending it. Sans-IO like every plugin: its one request goes to
//! [`HOST_OUTBOX_URL`], a destination the host serves itself by appending the body as one
//! line to a file it owns (`<data>/mock-sms-outbox.jsonl`); no network client serves it.

use std::time::SystemTime;

use plugin_api::{
    english, find_template_for, render_template, ConnectorError, ConnectorMetadata, FormItem,
    FormItemType, HttpRequest, SendProgress, SendReceipt, SmsConnector, SmsMessage, SmsTemplate,
    Step,
};
use serde::{Deserialize, Deserializer, Serialize};

pub const FACTORY_ID: &str = "mock-short-message-service";

/// The host's outbox: a URL with a scheme of its own, answered by the host, never sent.
pub const HOST_OUTBOX_URL: &str = "connector-host:outbox";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MockSmsConfig {
    pub templates: Vec<SmsTemplate>,
    /// `true` (the default): each message goes to the host's outbox; `false`: discarded.
    #[serde(default = "default_outbox", deserialize_with = "outbox_switch")]
    pub outbox: bool,
}

fn default_outbox() -> bool {
    true
}

/// The switch, and the values saved before it was one: a path (`"/tmp/outbox.jsonl"`, now
/// ignored: the host owns the file) means on, `null` (discard) means off.
fn outbox_switch<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Saved {
        Switch(bool),
        // Read to check it is text, then ignored: the host owns the file.
        LegacyPath(#[allow(dead_code)] String),
    }
    Ok(match Option::<Saved>::deserialize(deserializer)? {
        Some(Saved::Switch(on)) => on,
        Some(Saved::LegacyPath(_)) => true,
        None => false,
    })
}

pub struct MockSms {
    config: MockSmsConfig,
}

/// What the mock hands to the host's outbox (the host adds `connectorId` and `factoryId`).
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
            description: english("Writes each message to the host's outbox file instead of sending it. For development only."),
            readme: include_str!("../README.md").to_owned(),
            logo: Some(LOGO_SVG.to_owned()),
            logo_dark: None,
            config_template: CONFIG_TEMPLATE.to_owned(),
            form_items: vec![
                FormItem::new("templates", "Templates", FormItemType::Json)
                    .required()
                    .default_value(serde_json::from_str::<serde_json::Value>(CONFIG_TEMPLATE).map(|c| c["templates"].clone()).unwrap_or_default())
                    .description("One template per usage type; Generic serves the others. {{code}} is replaced by the code."),
                FormItem::new("outbox", "Write to the host outbox", FormItemType::Switch)
                    .default_value(serde_json::Value::Bool(true))
                    .description("On: each message is appended to the host's outbox file (mock-sms-outbox.jsonl in its data directory). Off: messages are discarded."),
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

    fn step(&self, message: &SmsMessage, progress: SendProgress) -> Result<Step, ConnectorError> {
        if let Some(answer) = progress.last_response() {
            // The host's answer to the outbox request: the id travelled in the state.
            if !answer.is_success() {
                return Err(ConnectorError::general(format!(
                    "the host outbox answered {}: {}",
                    answer.status(),
                    answer.body_excerpt(200)
                )));
            }
            let provider_message_id = progress
                .state()
                .as_str()
                .ok_or_else(|| ConnectorError::general("the send lost its message id"))?;
            return Ok(Step::done(SendReceipt::with_provider_message_id(
                provider_message_id,
            )));
        }
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
        if !self.config.outbox {
            return Ok(Step::done(SendReceipt::with_provider_message_id(
                provider_message_id,
            )));
        }
        let entry = OutboxEntry {
            to: message.to().to_owned(),
            template_type: message.template_type().to_string(),
            content,
            payload: message.payload().to_json_map(),
            at: humantime::format_rfc3339_millis(now).to_string(),
        };
        let body = serde_json::to_value(&entry)
            .map_err(|error| ConnectorError::general(error.to_string()))?;
        Ok(Step::http_with_state(
            HttpRequest::post_json(HOST_OUTBOX_URL, &body),
            serde_json::Value::String(provider_message_id),
        ))
    }
}

const LOGO_SVG: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><path d="M5 4h14a2 2 0 0 1 2 2v9a2 2 0 0 1-2 2h-7l-5 4v-4H5a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z" fill="none" stroke="#5d34f2" stroke-width="2" stroke-linejoin="round"/><circle cx="8" cy="10.5" r="1.3" fill="#5d34f2"/><circle cx="12" cy="10.5" r="1.3" fill="#5d34f2"/><circle cx="16" cy="10.5" r="1.3" fill="#5d34f2"/></svg>"##;

plugin_api::export_sms_connector!(MockSms);

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_api::{run_send, ConnectorErrorCode, ConnectorModule, HttpResponse, TemplateType};
    use serde_json::json;

    fn message(template_type: TemplateType) -> SmsMessage {
        SmsMessage::new(
            "+12015550123".to_owned(),
            template_type,
            json!({"code": "123456"}).as_object().cloned().unwrap(),
        )
    }

    fn normalized_outbox(config: serde_json::Value) -> serde_json::Value {
        let (normalized, _) = plugin_api::validate_config::<MockSms>(config).unwrap();
        normalized["outbox"].clone()
    }

    #[test]
    fn metadata_is_valid_and_config_template_validates() {
        let metadata = MockSms::metadata();
        assert_eq!(metadata.problems(), Vec::<String>::new());
        let template: serde_json::Value = serde_json::from_str(&metadata.config_template).unwrap();
        assert_eq!(normalized_outbox(template), json!(true));
    }

    #[test]
    fn the_outbox_is_a_switch_never_a_path() {
        let metadata = MockSms::metadata();
        let outbox = metadata
            .form_items
            .iter()
            .find(|item| item.key == "outbox")
            .unwrap();
        assert_eq!(outbox.item_type, FormItemType::Switch);
        assert!(metadata
            .form_items
            .iter()
            .all(|item| item.item_type != FormItemType::Text));
    }

    #[test]
    fn saved_outbox_values_are_normalized_to_the_switch() {
        let templates = json!([{"usageType": "Generic", "content": "{{code}}"}]);
        let with = |outbox: serde_json::Value| json!({"templates": templates, "outbox": outbox});
        assert_eq!(normalized_outbox(with(json!(true))), json!(true));
        assert_eq!(normalized_outbox(with(json!(false))), json!(false));
        // Saved before the switch: a path (ignored, the host owns the file) and null (discard).
        assert_eq!(
            normalized_outbox(with(json!("/home/me/.bashrc"))),
            json!(true)
        );
        assert_eq!(normalized_outbox(with(json!(null))), json!(false));
        assert_eq!(
            normalized_outbox(json!({"templates": templates})),
            json!(true)
        );
        let wrong = plugin_api::validate_config::<MockSms>(with(json!(3)))
            .err()
            .unwrap();
        assert_eq!(wrong.code, ConnectorErrorCode::InvalidConfig);
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
    fn send_hands_the_rendered_message_to_the_host_outbox_with_generic_fallback() {
        // A legacy path: ignored, the message goes to the host's outbox all the same.
        let config = json!({"templates": [{"usageType": "Generic", "content": "Code {{code}}"}], "outbox": "/tmp/anywhere.jsonl"});
        let (_, connector) = plugin_api::validate_config::<MockSms>(config).unwrap();
        let mut requests = Vec::new();
        let receipt = run_send(
            &connector,
            &message(TemplateType::SignIn),
            |request| {
                requests.push((
                    request.method().to_owned(),
                    request.url().to_owned(),
                    request.body().to_vec(),
                ));
                HttpResponse::new(200, Vec::new())
            },
            4,
        )
        .unwrap();
        assert!(receipt.provider_message_id().unwrap().starts_with("mock-"));
        assert_eq!(requests.len(), 1);
        let (method, url, body) = &requests[0];
        assert_eq!((method.as_str(), url.as_str()), ("POST", HOST_OUTBOX_URL));
        let entry: OutboxEntry = serde_json::from_slice(body).unwrap();
        assert_eq!(
            (
                entry.to.as_str(),
                entry.template_type.as_str(),
                entry.content.as_str()
            ),
            ("+12015550123", "SignIn", "Code 123456")
        );
        assert_eq!(entry.payload["code"], "123456");
    }

    #[test]
    fn a_refusing_host_outbox_is_an_error() {
        let (_, connector) = plugin_api::validate_config::<MockSms>(
            json!({"templates": [{"usageType": "Generic", "content": "{{code}}"}]}),
        )
        .unwrap();
        let error = run_send(
            &connector,
            &message(TemplateType::Generic),
            |_| HttpResponse::new(500, "disk full"),
            4,
        )
        .unwrap_err();
        assert_eq!(error.code, ConnectorErrorCode::General);
        assert!(error.message.contains("disk full"), "{}", error.message);
    }

    #[test]
    fn outbox_off_sends_nothing() {
        let (_, connector) = plugin_api::validate_config::<MockSms>(
            json!({"templates": [{"usageType": "Generic", "content": "{{code}}"}], "outbox": false}),
        )
        .unwrap();
        let receipt = run_send(
            &connector,
            &message(TemplateType::Generic),
            |_| unreachable!("a discarding mock makes no request"),
            4,
        )
        .unwrap();
        assert!(receipt.provider_message_id().unwrap().starts_with("mock-"));
    }

    #[test]
    fn missing_template_is_template_not_found() {
        let (_, connector) = plugin_api::validate_config::<MockSms>(
            json!({"templates": [{"usageType": "SignIn", "content": "x"}], "outbox": false}),
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
        let config = json!({"templates": [{"usageType": "Generic", "content": "{{code}}"}]});
        let instance = module.instantiate(&config).unwrap();
        let message = message(TemplateType::Generic);
        let step = instance.start(&message).unwrap();
        let request = step.request().unwrap();
        assert_eq!(request.url(), HOST_OUTBOX_URL);
        let done = instance
            .resume(&message, &step, &HttpResponse::new(200, Vec::new()))
            .unwrap();
        assert!(done
            .receipt()
            .and_then(SendReceipt::provider_message_id)
            .is_some_and(|id| id.starts_with("mock-")));
        let error = module
            .validate_config(&json!({"templates": "nope"}))
            .unwrap_err();
        assert_eq!(error.code, ConnectorErrorCode::InvalidConfig);
    }
}
