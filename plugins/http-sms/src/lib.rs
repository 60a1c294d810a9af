//! Logto's HTTP SMS connector: POSTs each message as JSON `{to, type, payload}` to an endpoint
//! of yours, with an optional raw `Authorization` header. Your service renders and delivers
//! the text; any non-2xx answer is an error carrying (the start of) its body: 401 and 403
//! `invalid_config` (the saved authorization is wrong), 429 `rate_limit_exceeded`, anything
//! else `general`.

use plugin_api::{
    english, require_http_url, ConnectorError, ConnectorMetadata, FormItem, FormItemType,
    HttpRequest, SendProgress, SendReceipt, SmsConnector, SmsMessage, Step,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpSmsConfig {
    pub endpoint: String,
    /// Sent as the `Authorization` header, as is (`Bearer ...`, `Basic ...`).
    #[serde(default)]
    pub authorization: Option<String>,
}

pub struct HttpSms {
    config: HttpSmsConfig,
}

impl SmsConnector for HttpSms {
    type Config = HttpSmsConfig;

    fn metadata() -> ConnectorMetadata {
        ConnectorMetadata {
            id: "http-sms".to_owned(),
            target: "http-sms".to_owned(),
            name: english("HTTP SMS"),
            description: english("Sends each message as JSON to an HTTP endpoint of yours, which delivers it."),
            readme: include_str!("../README.md").to_owned(),
            logo: None,
            logo_dark: None,
            config_template: r#"{"endpoint": "https://sms.example.com/send", "authorization": "Bearer your-token"}"#.to_owned(),
            form_items: vec![
                FormItem::new("endpoint", "Endpoint", FormItemType::Text).required().placeholder("https://sms.example.com/send"),
                FormItem::new("authorization", "Authorization header", FormItemType::Text).confidential().placeholder("Bearer ..."),
            ],
        }
    }

    fn from_config(config: HttpSmsConfig) -> Result<Self, ConnectorError> {
        require_http_url("endpoint", &config.endpoint)?;
        Ok(Self { config })
    }

    fn step(&self, message: &SmsMessage, progress: SendProgress) -> Result<Step, ConnectorError> {
        let Some(response) = progress.last_response() else {
            let body = serde_json::json!({"to": message.to(), "type": message.template_type(), "payload": message.payload()});
            let mut request = HttpRequest::post_json(&self.config.endpoint, &body);
            if let Some(authorization) = self
                .config
                .authorization
                .as_deref()
                .filter(|value| !value.is_empty())
            {
                request = request.header("Authorization", authorization);
            }
            return Ok(Step::http(request));
        };
        if response.is_success() {
            return Ok(Step::done(SendReceipt::new()));
        }
        let message = format!(
            "the endpoint answered {}: {}",
            response.status(),
            response.error_summary()
        );
        let error = match response.status() {
            401 | 403 => ConnectorError::invalid_config(message),
            429 => ConnectorError::rate_limit_exceeded(message),
            _ => ConnectorError::general(message),
        };
        Err(error
            .with_data(serde_json::json!({"status": response.status()}))
            .with_retry_after_from(response))
    }
}

plugin_api::export_sms_connector!(HttpSms);

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_api::{run_send, ConnectorErrorCode, HttpResponse, TemplateType};
    use serde_json::json;

    fn message() -> SmsMessage {
        SmsMessage::new(
            "+12015550123",
            TemplateType::ForgotPassword,
            json!({"code": "5"}).as_object().cloned().unwrap(),
        )
    }

    #[test]
    fn posts_the_message_as_json_with_the_raw_authorization() {
        let (_, connector) = plugin_api::validate_config::<HttpSms>(
            json!({"endpoint": "https://sms.example.com/send", "authorization": "Bearer t"}),
        )
        .unwrap();
        let request = connector
            .step(&message(), SendProgress::start())
            .unwrap()
            .request()
            .cloned()
            .expect("a request");
        assert_eq!(
            (request.method(), request.url()),
            ("POST", "https://sms.example.com/send")
        );
        assert!(request
            .headers()
            .any(|header| header == ("Authorization", "Bearer t")));
        let body: serde_json::Value = serde_json::from_slice(request.body()).unwrap();
        assert_eq!(
            body,
            json!({"to": "+12015550123", "type": "ForgotPassword", "payload": {"code": "5"}})
        );
    }

    #[test]
    fn a_non_2xx_answer_is_an_error_with_a_short_sanitized_excerpt() {
        let (_, connector) =
            plugin_api::validate_config::<HttpSms>(json!({"endpoint": "http://127.0.0.1:1/"}))
                .unwrap();
        let long_body = "\u{1b}[2Jx".to_owned() + &"x".repeat(2000);
        let error = run_send(
            &connector,
            &message(),
            |_| HttpResponse::new(500, long_body.clone().into_bytes()),
            3,
        )
        .unwrap_err();
        assert!(
            error
                .message
                .starts_with("the endpoint answered 500: [2Jxxx")
                && error.message.chars().count() <= 130
                && !error.message.contains(char::is_control),
            "{}",
            error.message
        );
        // A JSON answer gives its error fields only, never the rest of the body.
        let error = run_send(
            &connector,
            &message(),
            |_| {
                HttpResponse::new(
                    401,
                    r#"{"error": "unauthorized", "received": {"authorization": "Bearer t"}}"#,
                )
            },
            3,
        )
        .unwrap_err();
        assert_eq!(
            error.message,
            "the endpoint answered 401: error=unauthorized"
        );
        assert!(run_send(
            &connector,
            &message(),
            |_| HttpResponse::new(204, vec![]),
            3
        )
        .is_ok());
        assert!(
            plugin_api::validate_config::<HttpSms>(json!({"endpoint": "sms.example.com"})).is_err()
        );
    }

    #[test]
    fn refused_credentials_and_rate_limits_have_their_codes() {
        let (_, connector) = plugin_api::validate_config::<HttpSms>(
            json!({"endpoint": "https://sms.example.com/send", "authorization": "Bearer t"}),
        )
        .unwrap();
        for (status, code) in [
            (401, ConnectorErrorCode::InvalidConfig),
            (403, ConnectorErrorCode::InvalidConfig),
            (429, ConnectorErrorCode::RateLimitExceeded),
            (404, ConnectorErrorCode::General),
        ] {
            let error = run_send(
                &connector,
                &message(),
                |_| HttpResponse::new(status, "no"),
                3,
            )
            .unwrap_err();
            assert_eq!(error.code, code, "{status}");
            assert_eq!(error.data.unwrap()["status"], status, "{status}");
        }
        let throttled = run_send(
            &connector,
            &message(),
            |_| HttpResponse::new(429, "slow down").with_header("Retry-After", "17"),
            3,
        )
        .unwrap_err();
        assert_eq!(
            throttled.retry_after(),
            Some(std::time::Duration::from_secs(17))
        );
        assert_eq!(throttled.data.unwrap()["status"], 429, "the status stays");
    }
}
