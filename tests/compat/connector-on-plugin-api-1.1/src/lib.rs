//! A connector as a vendor wrote it against plugin-api 1.0.0: a token request, then the send
//! with the token (read from the token answer's JSON), a receipt with the provider's id. It crosses every boundary type in both
//! directions (message and response read in place by the plugin; request, state and receipt by
//! the host), so a layout change that breaks 1.0 plugins fails the compatibility test.

use plugin_api::{
    english, find_template_for, render_template, ConnectorError, ConnectorMetadata, FormItem,
    FormItemType, HttpRequest, SendProgress, SendReceipt, SmsConnector, SmsMessage, SmsTemplate,
    Step,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CompatConfig {
    pub base_url: String,
    pub api_key: String,
    pub templates: Vec<SmsTemplate>,
}

pub struct CompatConnector {
    config: CompatConfig,
}

impl SmsConnector for CompatConnector {
    type Config = CompatConfig;

    fn metadata() -> ConnectorMetadata {
        ConnectorMetadata {
            id: "compat-plugin-api-1-1".to_owned(),
            target: "compat".to_owned(),
            name: english("Built on plugin-api 1.1.0"),
            description: english("Fetches a token, then sends with it."),
            readme: "# Built on plugin-api 1.0.0\n\nConfig: `baseUrl`, `apiKey`, `templates`."
                .to_owned(),
            logo: None,
            logo_dark: None,
            config_template: r#"{"baseUrl": "http://127.0.0.1:9", "apiKey": "", "templates": [{"usageType": "Generic", "content": "{{code}}"}]}"#.to_owned(),
            form_items: vec![
                FormItem::new("baseUrl", "Base URL", FormItemType::Text).required(),
                FormItem::new("apiKey", "API key", FormItemType::Text)
                    .required()
                    .confidential(),
                FormItem::new("templates", "Templates", FormItemType::Json).required(),
            ],
        }
    }

    fn from_config(config: CompatConfig) -> Result<Self, ConnectorError> {
        plugin_api::require_http_url("baseUrl", &config.base_url)?;
        Ok(Self { config })
    }

    fn step(
        &self,
        message: &SmsMessage,
        progress: SendProgress<'_>,
    ) -> Result<Step, ConnectorError> {
        let Some(response) = progress.last_response() else {
            find_template_for(&self.config.templates, message)?;
            let token_request = HttpRequest::post_form(
                format!("{}/token", self.config.base_url),
                &[("key", &self.config.api_key)],
            );
            return Ok(Step::http_with_state(
                token_request,
                serde_json::json!({"phase": "token"}),
            ));
        };
        if !response.is_success() {
            return Err(ConnectorError::general(format!(
                "the provider answered {}: {}",
                response.status(),
                response.body_excerpt(200)
            )));
        }
        match progress.state()["phase"].as_str() {
            Some("token") => {
                #[derive(Deserialize)]
                struct Token {
                    token: String,
                }
                let token: Token = response.json()?;
                let token = token.token;
                // A 1.1 capability: the host logs it at debug.
                progress.note(format!("fetched a token of {} characters", token.len()));
                let template = find_template_for(&self.config.templates, message)?;
                let text = render_template(&template.content, message.payload());
                let send = HttpRequest::post_json(
                    format!("{}/messages", self.config.base_url),
                    &serde_json::json!({"to": message.to(), "text": text}),
                )
                .header("Authorization", format!("Bearer {token}"));
                Ok(Step::http_with_state(
                    send,
                    serde_json::json!({"phase": "send"}),
                ))
            }
            _ => {
                #[derive(Deserialize)]
                struct Sent {
                    id: Option<String>,
                }
                let sent: Sent = response.json()?;
                Ok(Step::done(SendReceipt::with_optional_provider_message_id(
                    sent.id,
                )))
            }
        }
    }
}

plugin_api::export_sms_connector!(CompatConnector);
