//! Logto's HTTP SMS connector: POSTs each message as JSON `{to, type, payload}` to an endpoint
//! of yours, with an optional raw `Authorization` header. Your service renders and delivers
//! the text; any non-2xx answer is an error carrying (the start of) its body: 401 and 403
//! `invalid_config` (the saved authorization is wrong), 429 `rate_limit_exceeded`, anything
//! else `general`.

use plugin_api::{
    english, require_http_url, ConnectorError, ConnectorMetadata, DeliveryReport,
    DeliveryReportError, DeliveryReportSupport, DeliveryStatus, FormItem, FormItemType,
    HttpRequest, InboundReport, SendProgress, SendReceipt, SmsConnector, SmsMessage, Step,
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
            let mut body = serde_json::json!({"to": message.to(), "type": message.template_type(), "payload": message.payload()});
            // Only when the host takes delivery reports: Logto's body otherwise, as it was.
            if let (Some(url), Some(id)) = (progress.delivery_report_url(), progress.message_id()) {
                body["messageId"] = id.into();
                body["callbackUrl"] = url.into();
            }
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
        }
        .with_data(serde_json::json!({"status": response.status()}))
        .with_retry_after_from(response);
        // Refused as a whole before anything was accepted (credentials, throttling, "try
        // later"): the host may send it through its standby connector.
        Err(if matches!(response.status(), 401 | 403 | 429 | 503) {
            error.not_accepted()
        } else {
            error
        })
    }

    fn delivery_reports() -> Option<DeliveryReportSupport> {
        Some(DeliveryReportSupport {
            signature: "none: the host's token in callbackUrl is the check".to_owned(),
        })
    }

    /// Your service POSTs `{"status", "providerMessageId"?, "errorCode"?}` as JSON to the
    /// `callbackUrl` it was given; `status` is one of `queued`, `sent`, `delivered`,
    /// `undelivered`, `failed`.
    fn parse_delivery_report(
        &self,
        report: &InboundReport,
    ) -> Result<Vec<DeliveryReport>, DeliveryReportError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Callback {
            status: String,
            #[serde(default)]
            provider_message_id: Option<String>,
            #[serde(default)]
            error_code: Option<String>,
        }
        let callback: Callback = serde_json::from_slice(report.body()).map_err(|error| {
            DeliveryReportError::Malformed(format!(
                "the report is not the JSON {{\"status\", \"providerMessageId\"?, \"errorCode\"?}}: {error}"
            ))
        })?;
        let status = serde_json::from_value(serde_json::Value::String(callback.status.clone()))
            .unwrap_or(DeliveryStatus::Unknown);
        let mut delivery = DeliveryReport::new(status, callback.status);
        if let Some(id) = callback.provider_message_id {
            delivery = delivery.with_provider_message_id(id);
        }
        if let Some(code) = callback.error_code {
            delivery = delivery.with_error_code(code);
        }
        Ok(vec![delivery])
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
        // Refused as a whole (the standby may send it) or not.
        for (status, code, not_accepted) in [
            (401, ConnectorErrorCode::InvalidConfig, true),
            (403, ConnectorErrorCode::InvalidConfig, true),
            (429, ConnectorErrorCode::RateLimitExceeded, true),
            (503, ConnectorErrorCode::General, true),
            (404, ConnectorErrorCode::General, false),
            (400, ConnectorErrorCode::General, false),
            (500, ConnectorErrorCode::General, false),
        ] {
            let error = run_send(
                &connector,
                &message(),
                |_| HttpResponse::new(status, "no"),
                3,
            )
            .unwrap_err();
            assert_eq!(error.code, code, "{status}");
            assert_eq!(error.is_not_accepted(), not_accepted, "{status}");
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

    #[test]
    fn the_callback_url_is_sent_only_when_the_host_takes_reports_and_reports_are_read() {
        let (_, connector) = plugin_api::validate_config::<HttpSms>(
            json!({"endpoint": "https://sms.example.com/send"}),
        )
        .unwrap();
        let body_of = |progress: plugin_api::SendProgress<'_>| -> serde_json::Value {
            let step = connector.step(&message(), progress).unwrap();
            serde_json::from_slice(step.request().unwrap().body()).unwrap()
        };
        let plain = body_of(plugin_api::SendProgress::start());
        assert!(
            plain.get("callbackUrl").is_none() && plain.get("messageId").is_none(),
            "{plain}"
        );
        let context = plugin_api::SendContext::new(
            "0193a5b2-7c4e-7d4f-9a1b-2c3d4e5f6a7b",
            Some("https://hosts.example.com/dlr/abc?m=1&t=x".to_owned()),
        );
        let tracked = body_of(plugin_api::SendProgress::start().with_context(&context));
        assert_eq!(
            tracked["callbackUrl"],
            "https://hosts.example.com/dlr/abc?m=1&t=x"
        );
        assert_eq!(tracked["messageId"], "0193a5b2-7c4e-7d4f-9a1b-2c3d4e5f6a7b");

        let report = |body: &str| {
            connector.parse_delivery_report(
                &InboundReport::new("POST", "https://hosts.example.com/dlr/abc?m=1&t=x")
                    .with_header("Content-Type", "application/json")
                    .with_body(body),
            )
        };
        assert_eq!(
            report(
                r#"{"status": "undelivered", "providerMessageId": "p-1", "errorCode": "absent"}"#
            )
            .unwrap(),
            [
                DeliveryReport::new(DeliveryStatus::Undelivered, "undelivered")
                    .with_provider_message_id("p-1")
                    .with_error_code("absent")
            ]
        );
        assert_eq!(
            report(r#"{"status": "on its way"}"#).unwrap()[0].status,
            DeliveryStatus::Unknown
        );
        assert!(matches!(
            report("status=delivered"),
            Err(DeliveryReportError::Malformed(_))
        ));
    }
}
