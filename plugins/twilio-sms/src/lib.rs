//! Twilio Programmable Messaging: `POST {baseUrl}/2010-04-01/Accounts/{AccountSid}/Messages.json`,
//! form-encoded, HTTP basic auth (Account SID and auth token).

use plugin_api::{
    english, find_template_for, render_template, require_http_url, require_non_empty,
    ConnectorError, ConnectorMetadata, DeliveryReport, DeliveryReportError, DeliveryReportSupport,
    DeliveryStatus, FormItem, FormItemType, HttpRequest, InboundReport, SendProgress, SendReceipt,
    SmsConnector, SmsMessage, SmsTemplate, Step,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TwilioConfig {
    #[serde(rename = "accountSID")]
    pub account_sid: String,
    pub auth_token: String,
    /// A Messaging Service SID (`MG...`); Logto's sender. Optional when `from` is set.
    #[serde(rename = "fromMessagingServiceSID", default)]
    pub from_messaging_service_sid: Option<String>,
    /// A phone number in E.164 or an alphanumeric sender id (logto issue 8045).
    #[serde(default)]
    pub from: Option<String>,
    /// Twilio's API host; other regions (logto issue 9611) or a test double.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    pub templates: Vec<SmsTemplate>,
}

fn default_base_url() -> String {
    "https://api.twilio.com".to_owned()
}

pub struct TwilioSms {
    config: TwilioConfig,
    messages_url: String,
}

/// Twilio's error body, e.g. `{"code": 21211, "message": "...", "status": 400}`.
#[derive(Deserialize)]
struct TwilioError {
    code: Option<u32>,
    message: Option<String>,
}

impl SmsConnector for TwilioSms {
    type Config = TwilioConfig;

    fn metadata() -> ConnectorMetadata {
        ConnectorMetadata {
            id: "twilio-short-message-service".to_owned(),
            target: "twilio-sms".to_owned(),
            name: english("Twilio SMS"),
            description: english("Sends SMS through Twilio Programmable Messaging."),
            readme: include_str!("../README.md").to_owned(),
            logo: Some(r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 30 30"><circle cx="15" cy="15" r="13" fill="none" stroke="#f22f46" stroke-width="3"/><circle cx="11" cy="11" r="2.5" fill="#f22f46"/><circle cx="19" cy="11" r="2.5" fill="#f22f46"/><circle cx="11" cy="19" r="2.5" fill="#f22f46"/><circle cx="19" cy="19" r="2.5" fill="#f22f46"/></svg>"##.to_owned()),
            logo_dark: None,
            config_template: include_str!("../config-template.json").to_owned(),
            form_items: vec![
                FormItem::new("accountSID", "Account SID", FormItemType::Text).required().placeholder("AC..."),
                FormItem::new("authToken", "Auth token", FormItemType::Text).required().confidential(),
                FormItem::new("fromMessagingServiceSID", "Messaging Service SID", FormItemType::Text).placeholder("MG..."),
                FormItem::new("from", "Sender (phone number or alphanumeric id)", FormItemType::Text).placeholder("+12015550100"),
                FormItem::new("baseUrl", "API base URL", FormItemType::Text).default_value("https://api.twilio.com".into()),
                FormItem::new("templates", "Templates", FormItemType::Json).required(),
            ],
        }
    }

    fn from_config(config: TwilioConfig) -> Result<Self, ConnectorError> {
        require_non_empty("accountSID", &config.account_sid)?;
        require_non_empty("authToken", &config.auth_token)?;
        let base_url = require_http_url("baseUrl", &config.base_url)?;
        let has_sender = [&config.from_messaging_service_sid, &config.from]
            .iter()
            .any(|sender| sender.as_deref().is_some_and(|s| !s.trim().is_empty()));
        if !has_sender {
            // Either field will do: say so on both, not "must not be empty" on the optional one.
            let message = "set a Messaging Service SID or a sender (phone number or alphanumeric id): one of the two is needed";
            return Err(plugin_api::invalid_config_fields(
                ["fromMessagingServiceSID", "from"]
                    .map(|field| plugin_api::ConfigFieldError {
                        field: field.to_owned(),
                        message: message.to_owned(),
                    })
                    .to_vec(),
            ));
        }
        // It goes into the URL path: letters and digits only (Twilio's SIDs are `AC` + hex).
        if !config
            .account_sid
            .chars()
            .all(|c| c.is_ascii_alphanumeric())
        {
            return Err(plugin_api::invalid_config_fields(vec![
                plugin_api::ConfigFieldError {
                    field: "accountSID".to_owned(),
                    message: "an Account SID has letters and digits only".to_owned(),
                },
            ]));
        }
        let messages_url = format!(
            "{base_url}/2010-04-01/Accounts/{}/Messages.json",
            config.account_sid
        );
        Ok(Self {
            config,
            messages_url,
        })
    }

    fn step(&self, message: &SmsMessage, progress: SendProgress) -> Result<Step, ConnectorError> {
        let Some(response) = progress.last_response() else {
            let body = render_template(
                &find_template_for(&self.config.templates, message)?.content,
                message.payload(),
            );
            let mut fields = vec![("To", message.to()), ("Body", body.as_str())];
            if let Some(service) = self
                .config
                .from_messaging_service_sid
                .as_deref()
                .filter(|s| !s.is_empty())
            {
                fields.push(("MessagingServiceSid", service));
            }
            if let Some(from) = self.config.from.as_deref().filter(|s| !s.is_empty()) {
                fields.push(("From", from));
            }
            // Twilio posts the message's status changes there, signed with the auth token.
            if let Some(url) = progress.delivery_report_url() {
                fields.push(("StatusCallback", url));
            }
            let request = HttpRequest::post_form(&self.messages_url, &fields)
                .basic_auth(&self.config.account_sid, &self.config.auth_token);
            return Ok(Step::http(request));
        };
        if response.is_success() {
            #[derive(Deserialize)]
            struct Created {
                sid: Option<String>,
                status: Option<String>,
            }
            let created: Created = response.json()?;
            progress.note(format!(
                "Twilio created message {} with status {}",
                created.sid.as_deref().unwrap_or("(no sid)"),
                created.status.as_deref().unwrap_or("(none)")
            ));
            return Ok(Step::done(SendReceipt::with_optional_provider_message_id(
                created.sid,
            )));
        }
        let error: Option<TwilioError> = response.json().ok();
        let code = error.as_ref().and_then(|error| error.code);
        let text = error
            .and_then(|error| error.message)
            .unwrap_or_else(|| response.error_summary());
        let message = format!(
            "Twilio answered {} (code {}): {text}",
            response.status(),
            code.map_or("none".to_owned(), |c| c.to_string())
        );
        // `not_accepted`: Twilio refused the request as a whole, no message was created (the
        // host may send it through its standby connector).
        Err(match (response.status(), code) {
            (429, _) | (_, Some(20429)) => ConnectorError::rate_limit_exceeded(message)
                .with_retry_after_from(response)
                .not_accepted(),
            (401 | 403, _) | (_, Some(20003)) => {
                ConnectorError::invalid_config(message).not_accepted()
            }
            (503, _) => ConnectorError::general(message)
                .with_retry_after_from(response)
                .not_accepted(),
            (_, Some(21211 | 21614 | 21408 | 21610)) => {
                ConnectorError::invalid_request_parameters(message)
            }
            (_, Some(30022 | 20005)) => ConnectorError::usage_limit_exceeded(message),
            _ => ConnectorError::general(message),
        })
    }

    fn delivery_reports() -> Option<DeliveryReportSupport> {
        Some(DeliveryReportSupport {
            signature: "X-Twilio-Signature: HMAC-SHA1 of the URL and the sorted parameters, \
                        keyed with the auth token"
                .to_owned(),
        })
    }

    /// A `StatusCallback` request: `MessageSid`, `MessageStatus`, `ErrorCode`, form-encoded,
    /// signed with the auth token.
    fn parse_delivery_report(
        &self,
        report: &InboundReport,
    ) -> Result<Vec<DeliveryReport>, DeliveryReportError> {
        let parameters = report.form_pairs();
        check_twilio_signature(report, &parameters, &self.config.auth_token)?;
        let parameter = |name: &str| {
            parameters
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.as_str())
        };
        let provider_status = parameter("MessageStatus")
            .or_else(|| parameter("SmsStatus"))
            .ok_or_else(|| {
                DeliveryReportError::Malformed("no MessageStatus in the report".to_owned())
            })?;
        let status = match provider_status {
            "accepted" | "scheduled" | "queued" => DeliveryStatus::Queued,
            "sending" | "sent" => DeliveryStatus::Sent,
            "delivered" | "read" => DeliveryStatus::Delivered,
            "undelivered" => DeliveryStatus::Undelivered,
            "failed" | "canceled" => DeliveryStatus::Failed,
            _ => DeliveryStatus::Unknown,
        };
        let mut delivery = DeliveryReport::new(status, provider_status);
        if let Some(sid) = parameter("MessageSid").or_else(|| parameter("SmsSid")) {
            delivery = delivery.with_provider_message_id(sid);
        }
        if let Some(code) = parameter("ErrorCode") {
            delivery = delivery.with_error_code(code);
        }
        Ok(vec![delivery])
    }
}

plugin_api::export_sms_connector!(TwilioSms);

/// Twilio's request signature: base64(HMAC-SHA1(auth token, URL + each POST parameter's name
/// and value, sorted by name)), compared in constant time.
fn check_twilio_signature(
    report: &InboundReport,
    parameters: &[(String, String)],
    auth_token: &str,
) -> Result<(), DeliveryReportError> {
    use base64::Engine;
    use hmac::Mac;
    let signature = report.header("X-Twilio-Signature").ok_or_else(|| {
        DeliveryReportError::BadSignature("the report has no X-Twilio-Signature".to_owned())
    })?;
    let signature = base64::engine::general_purpose::STANDARD
        .decode(signature.trim())
        .map_err(|_| {
            DeliveryReportError::BadSignature("X-Twilio-Signature is not base64".to_owned())
        })?;
    let mut sorted: Vec<&(String, String)> = parameters.iter().collect();
    sorted.sort();
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(auth_token.as_bytes())
        .map_err(|_| DeliveryReportError::BadSignature("no auth token to check with".to_owned()))?;
    mac.update(report.url().as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    mac.verify_slice(&signature).map_err(|_| {
        DeliveryReportError::BadSignature(
            "X-Twilio-Signature does not match: not signed with this connector's auth token, \
             or for another URL (set --public-url to the URL Twilio calls)"
                .to_owned(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_api::{run_send, ConnectorErrorCode, HttpResponse, TemplateType};
    use serde_json::json;

    fn connector() -> TwilioSms {
        let config = json!({
            "accountSID": "AC123", "authToken": "secret", "fromMessagingServiceSID": "MG456", "from": "Acme",
            "baseUrl": "http://127.0.0.1:4010/",
            "templates": [{"usageType": "Generic", "content": "Your code is {{code}}"}]
        });
        plugin_api::validate_config::<TwilioSms>(config).unwrap().1
    }

    fn message() -> SmsMessage {
        SmsMessage::new(
            "+12015550123",
            TemplateType::SignIn,
            json!({"code": "123456"}).as_object().cloned().unwrap(),
        )
    }

    fn answer(status: u16, body: serde_json::Value) -> HttpResponse {
        HttpResponse::new(status, body.to_string().into_bytes())
    }

    #[test]
    fn builds_the_form_request_with_basic_auth() {
        let request = connector()
            .step(&message(), SendProgress::start())
            .unwrap()
            .request()
            .cloned()
            .expect("a request");
        assert_eq!(request.method(), "POST");
        assert_eq!(
            request.url(),
            "http://127.0.0.1:4010/2010-04-01/Accounts/AC123/Messages.json"
        );
        let body = String::from_utf8(request.body().to_vec()).unwrap();
        assert_eq!(
            body,
            "To=%2B12015550123&Body=Your+code+is+123456&MessagingServiceSid=MG456&From=Acme"
        );
        assert!(request
            .headers()
            .any(|header| header == ("Authorization", "Basic QUMxMjM6c2VjcmV0")));
        assert!(request
            .headers()
            .any(|header| header == ("Content-Type", "application/x-www-form-urlencoded")));
    }

    #[test]
    fn reads_the_message_sid() {
        let receipt = run_send(
            &connector(),
            &message(),
            |_| answer(201, json!({"sid": "SM789", "status": "queued"})),
            3,
        )
        .unwrap();
        assert_eq!(receipt.provider_message_id(), Some("SM789"));
    }

    #[test]
    fn a_throttled_answer_carries_twilios_retry_after_and_a_note_says_what_was_created() {
        let throttled = run_send(
            &connector(),
            &message(),
            |_| {
                answer(429, json!({"code": 20429, "message": "Too Many Requests"}))
                    .with_header("Retry-After", "5")
            },
            3,
        )
        .unwrap_err();
        assert_eq!(throttled.code, ConnectorErrorCode::RateLimitExceeded);
        assert_eq!(
            throttled.retry_after(),
            Some(std::time::Duration::from_secs(5))
        );

        let connector = connector();
        let first = connector
            .step(&message(), plugin_api::SendProgress::start())
            .unwrap();
        let created = answer(201, json!({"sid": "SM789", "status": "queued"}));
        let notes = plugin_api::StepNotes::new();
        connector
            .step(
                &message(),
                plugin_api::SendProgress::after(first.state().unwrap(), &created)
                    .with_notes(&notes),
            )
            .unwrap();
        assert_eq!(
            notes.take(),
            ["Twilio created message SM789 with status queued"]
        );
    }

    /// The signature as Twilio computes it (HMAC-SHA1 in Python's standard library over the
    /// URL and the sorted parameters, keyed with the auth token).
    const SIGNED_URL: &str = "https://hosts.example.com/dlr/n233hf0atoce?m=0193a5b2-7c4e-7d4f-9a1b-2c3d4e5f6a7b&t=Zm9vYmFy";
    const SIGNED_BODY: &str = "MessageSid=SM4242&MessageStatus=delivered&AccountSid=AC0123456789abcdef0123456789abcdef&To=%2B12015550123&ErrorCode=30003";
    const SIGNATURE: &str = "Rz/Ctll5sTLA5ttJt5bSWlwz0Yc=";

    fn status_callback(url: &str, body: &str, signature: Option<&str>) -> InboundReport {
        let report = InboundReport::new("POST", url)
            .with_header("Content-Type", "application/x-www-form-urlencoded")
            .with_body(body);
        match signature {
            Some(signature) => report.with_header("X-Twilio-Signature", signature),
            None => report,
        }
    }

    fn signed_connector() -> TwilioSms {
        let config = json!({
            "accountSID": "AC0123456789abcdef0123456789abcdef",
            "authToken": "twilio-secret-token",
            "from": "+12015550100",
            "templates": [{"usageType": "Generic", "content": "{{code}}"}]
        });
        plugin_api::validate_config::<TwilioSms>(config).unwrap().1
    }

    #[test]
    fn a_signed_status_callback_is_read_and_a_forged_one_refused() {
        let connector = signed_connector();
        let reports = connector
            .parse_delivery_report(&status_callback(SIGNED_URL, SIGNED_BODY, Some(SIGNATURE)))
            .unwrap();
        assert_eq!(
            reports,
            [DeliveryReport::new(DeliveryStatus::Delivered, "delivered")
                .with_provider_message_id("SM4242")
                .with_error_code("30003")]
        );
        for (url, body, signature) in [
            (SIGNED_URL, SIGNED_BODY, None),
            (SIGNED_URL, SIGNED_BODY, Some("not base64!")),
            (
                SIGNED_URL,
                SIGNED_BODY.replace("delivered", "failed").as_str(),
                Some(SIGNATURE),
            ),
            (
                &SIGNED_URL.replace("hosts.example.com", "elsewhere.example"),
                SIGNED_BODY,
                Some(SIGNATURE),
            ),
        ] {
            let error = connector
                .parse_delivery_report(&status_callback(url, body, signature))
                .unwrap_err();
            assert!(
                matches!(error, DeliveryReportError::BadSignature(_)),
                "{error:?}"
            );
        }
        let other_token = {
            let config = json!({
                "accountSID": "AC0123456789abcdef0123456789abcdef",
                "authToken": "another-token",
                "from": "+12015550100",
                "templates": [{"usageType": "Generic", "content": "{{code}}"}]
            });
            plugin_api::validate_config::<TwilioSms>(config).unwrap().1
        };
        assert!(matches!(
            other_token.parse_delivery_report(&status_callback(
                SIGNED_URL,
                SIGNED_BODY,
                Some(SIGNATURE)
            )),
            Err(DeliveryReportError::BadSignature(_))
        ));
    }

    #[test]
    fn the_status_callback_goes_in_the_request_when_the_host_takes_reports() {
        let connector = signed_connector();
        let context = plugin_api::SendContext::new(
            "0193a5b2-7c4e-7d4f-9a1b-2c3d4e5f6a7b",
            Some("https://hosts.example.com/dlr/abc?m=1&t=x".to_owned()),
        );
        let step = connector
            .step(
                &message(),
                plugin_api::SendProgress::start().with_context(&context),
            )
            .unwrap();
        let body = String::from_utf8_lossy(step.request().unwrap().body()).into_owned();
        assert!(
            body.contains(
                "StatusCallback=https%3A%2F%2Fhosts.example.com%2Fdlr%2Fabc%3Fm%3D1%26t%3Dx"
            ),
            "{body}"
        );
        let without = connector
            .step(&message(), plugin_api::SendProgress::start())
            .unwrap();
        assert!(
            !String::from_utf8_lossy(without.request().unwrap().body()).contains("StatusCallback")
        );
    }

    #[test]
    fn maps_twilio_errors() {
        let cases = [
            (
                400,
                json!({"code": 21211, "message": "Invalid 'To' Phone Number"}),
                ConnectorErrorCode::InvalidRequestParameters,
            ),
            (
                429,
                json!({"code": 20429, "message": "Too Many Requests"}),
                ConnectorErrorCode::RateLimitExceeded,
            ),
            (
                401,
                json!({"code": 20003, "message": "Authenticate"}),
                ConnectorErrorCode::InvalidConfig,
            ),
            (
                403,
                json!({"code": 20403, "message": "Forbidden"}),
                ConnectorErrorCode::InvalidConfig,
            ),
            (500, json!({"message": "boom"}), ConnectorErrorCode::General),
        ];
        for (status, body, code) in cases {
            let error = run_send(
                &connector(),
                &message(),
                |_| answer(status, body.clone()),
                3,
            )
            .unwrap_err();
            assert_eq!(error.code, code, "{status} {body}");
            assert!(
                error
                    .message
                    .starts_with(&format!("Twilio answered {status}")),
                "{}",
                error.message
            );
        }
        let garbage = run_send(
            &connector(),
            &message(),
            |_| HttpResponse::new(201, b"<html>".to_vec()),
            3,
        )
        .unwrap_err();
        assert_eq!(garbage.code, ConnectorErrorCode::InvalidResponse);
    }

    #[test]
    fn config_needs_a_sender_and_a_url() {
        let base = json!({"accountSID": "AC1", "authToken": "t", "templates": []});
        let error = plugin_api::validate_config::<TwilioSms>(base.clone())
            .err()
            .unwrap();
        let errors = &error.data.unwrap()["errors"];
        assert_eq!(errors[0]["field"], "fromMessagingServiceSID");
        assert_eq!(errors[1]["field"], "from");
        assert!(errors[0]["message"]
            .as_str()
            .unwrap()
            .contains("or a sender"));
        let mut bad_url = base;
        bad_url["from"] = "Acme".into();
        bad_url["baseUrl"] = "api.twilio.com".into();
        let error = plugin_api::validate_config::<TwilioSms>(bad_url)
            .err()
            .unwrap();
        assert_eq!(error.data.unwrap()["errors"][0]["field"], "baseUrl");
        let template: serde_json::Value =
            serde_json::from_str(include_str!("../config-template.json")).unwrap();
        assert!(plugin_api::validate_config::<TwilioSms>(template).is_ok());
    }
}
