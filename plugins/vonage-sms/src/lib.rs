//! Vonage (Nexmo) SMS API: `POST {baseUrl}/sms/json`, form-encoded `api_key`, `api_secret`,
//! `from`, `to` (digits only) and `text`; each message's `status` says whether it was taken.

use plugin_api::{
    english, find_template_for, render_template, require_http_url, require_non_empty,
    ConnectorError, ConnectorMetadata, FormItem, FormItemType, HttpRequest, SendProgress,
    SendReceipt, SmsConnector, SmsMessage, SmsTemplate, Step,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VonageConfig {
    pub api_key: String,
    pub api_secret: String,
    /// The sender: a number or an alphanumeric brand name.
    pub brand_name: String,
    #[serde(default = "default_base_url")]
    pub base_url: String,
    pub templates: Vec<SmsTemplate>,
}

fn default_base_url() -> String {
    "https://rest.nexmo.com".to_owned()
}

pub struct VonageSms {
    config: VonageConfig,
    send_url: String,
}

#[derive(Deserialize)]
struct SendResponse {
    #[serde(rename = "message-count")]
    message_count: Option<String>,
    messages: Vec<MessageStatus>,
}

#[derive(Deserialize)]
struct MessageStatus {
    status: String,
    #[serde(rename = "message-id")]
    message_id: Option<String>,
    #[serde(rename = "error-text")]
    error_text: Option<String>,
}

impl SmsConnector for VonageSms {
    type Config = VonageConfig;

    fn metadata() -> ConnectorMetadata {
        ConnectorMetadata {
            id: "vonage-sms".to_owned(),
            target: "vonage-sms".to_owned(),
            name: english("Vonage SMS"),
            description: english("Sends SMS through the Vonage (Nexmo) SMS API."),
            readme: include_str!("../README.md").to_owned(),
            logo: None,
            logo_dark: None,
            config_template: include_str!("../config-template.json").to_owned(),
            form_items: vec![
                FormItem::new("apiKey", "API key", FormItemType::Text)
                    .required()
                    .confidential(),
                FormItem::new("apiSecret", "API secret", FormItemType::Text)
                    .required()
                    .confidential(),
                FormItem::new(
                    "brandName",
                    "Sender (number or brand name)",
                    FormItemType::Text,
                )
                .required(),
                FormItem::new("baseUrl", "API base URL", FormItemType::Text)
                    .default_value("https://rest.nexmo.com".into()),
                FormItem::new("templates", "Templates", FormItemType::Json).required(),
            ],
        }
    }

    fn from_config(config: VonageConfig) -> Result<Self, ConnectorError> {
        require_non_empty("apiKey", &config.api_key)?;
        require_non_empty("apiSecret", &config.api_secret)?;
        require_non_empty("brandName", &config.brand_name)?;
        let send_url = format!(
            "{}/sms/json",
            require_http_url("baseUrl", &config.base_url)?
        );
        Ok(Self { config, send_url })
    }

    fn step(&self, message: &SmsMessage, progress: SendProgress) -> Result<Step, ConnectorError> {
        let Some(response) = progress.last_response() else {
            let text = render_template(
                &find_template_for(&self.config.templates, message)?.content,
                message.payload(),
            );
            let to = message.to().trim_start_matches('+');
            let fields = [
                ("api_key", self.config.api_key.as_str()),
                ("api_secret", self.config.api_secret.as_str()),
                ("from", self.config.brand_name.as_str()),
                ("to", to),
                ("text", text.as_str()),
            ];
            return Ok(Step::http(HttpRequest::post_form(&self.send_url, &fields)));
        };
        if !response.is_success() {
            let message = format!(
                "Vonage answered {}: {}",
                response.status(),
                response.error_summary()
            );
            return Err(match response.status() {
                401 | 403 => ConnectorError::invalid_config(message),
                429 => ConnectorError::rate_limit_exceeded(message).with_retry_after_from(response),
                _ => ConnectorError::general(message),
            });
        }
        let sent: SendResponse = response.json()?;
        let parts = sent.message_count;
        let first = sent.messages.into_iter().next().ok_or_else(|| {
            ConnectorError::invalid_response("Vonage answered without a message status")
        })?;
        if progress.notes_wanted() {
            progress.note(format!(
                "Vonage answered status {} for message {} ({} parts)",
                first.status,
                first.message_id.as_deref().unwrap_or("(no id)"),
                parts.as_deref().unwrap_or("?")
            ));
        }
        if first.status == "0" {
            return Ok(Step::done(SendReceipt::with_optional_provider_message_id(
                first.message_id,
            )));
        }
        let message = format!(
            "Vonage refused the message (status {}): {}",
            first.status,
            first.error_text.unwrap_or_default()
        );
        Err(match first.status.as_str() {
            "1" => ConnectorError::rate_limit_exceeded(message),
            "2" => ConnectorError::new(
                plugin_api::ConnectorErrorCode::InsufficientRequestParameters,
                message,
            ),
            "3" | "6" | "15" => ConnectorError::invalid_request_parameters(message),
            "4" | "8" => ConnectorError::invalid_config(message),
            "9" | "29" => ConnectorError::usage_limit_exceeded(message),
            _ => ConnectorError::general(message),
        })
    }
}

plugin_api::export_sms_connector!(VonageSms);

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_api::{run_send, ConnectorErrorCode, HttpResponse, TemplateType};
    use serde_json::json;

    fn connector() -> VonageSms {
        let config = json!({"apiKey": "key", "apiSecret": "s&cret", "brandName": "Acme", "baseUrl": "http://127.0.0.1:9000",
            "templates": [{"usageType": "Generic", "content": "Code: {{code}}"}]});
        plugin_api::validate_config::<VonageSms>(config).unwrap().1
    }

    fn message() -> SmsMessage {
        SmsMessage::new(
            "+4915112345678",
            TemplateType::Register,
            json!({"code": "42"}).as_object().cloned().unwrap(),
        )
    }

    fn answer(status: &str) -> HttpResponse {
        let body = json!({"message-count": "1", "messages": [{"to": "4915112345678", "message-id": "0A000001", "status": status, "error-text": "reason"}]});
        HttpResponse::new(200, body.to_string().into_bytes())
    }

    #[test]
    fn builds_the_form_with_digits_only_recipient() {
        let request = connector()
            .step(&message(), SendProgress::start())
            .unwrap()
            .request()
            .cloned()
            .expect("a request");
        assert_eq!(
            (request.method(), request.url()),
            ("POST", "http://127.0.0.1:9000/sms/json")
        );
        let body = String::from_utf8(request.body().to_vec()).unwrap();
        assert_eq!(
            body,
            "api_key=key&api_secret=s%26cret&from=Acme&to=4915112345678&text=Code%3A+42"
        );
    }

    #[test]
    fn maps_each_message_status() {
        assert_eq!(
            run_send(&connector(), &message(), |_| answer("0"), 3)
                .unwrap()
                .provider_message_id(),
            Some("0A000001")
        );
        for (status, code) in [
            ("1", ConnectorErrorCode::RateLimitExceeded),
            ("2", ConnectorErrorCode::InsufficientRequestParameters),
            ("3", ConnectorErrorCode::InvalidRequestParameters),
            ("4", ConnectorErrorCode::InvalidConfig),
            ("9", ConnectorErrorCode::UsageLimitExceeded),
            ("5", ConnectorErrorCode::General),
        ] {
            let error = run_send(&connector(), &message(), |_| answer(status), 3).unwrap_err();
            assert_eq!(error.code, code, "status {status}");
            assert!(
                error.message.contains(&format!("status {status}"))
                    && error.message.contains("reason")
            );
        }
    }

    #[test]
    fn the_config_template_is_valid() {
        let template: serde_json::Value =
            serde_json::from_str(include_str!("../config-template.json")).unwrap();
        assert!(plugin_api::validate_config::<VonageSms>(template).is_ok());
    }
}
