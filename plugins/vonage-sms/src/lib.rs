//! Vonage (Nexmo) SMS API: `POST {baseUrl}/sms/json`, form-encoded `api_key`, `api_secret`,
//! `from`, `to` (digits only) and `text`; each message's `status` says whether it was taken.

use plugin_api::{
    english, find_template_for, render_template, require_http_url, require_non_empty,
    ConnectorError, ConnectorMetadata, DeliveryReport, DeliveryReportError, DeliveryReportSupport,
    DeliveryStatus, FormItem, FormItemType, HttpRequest, InboundReport, SendProgress, SendReceipt,
    SmsConnector, SmsMessage, SmsTemplate, Step,
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
    /// The account's signature secret (Vonage Dashboard → Settings), when it signs delivery
    /// receipts: each one is then checked with it.
    #[serde(default)]
    pub signature_secret: Option<String>,
    /// How the account signs: `md5hash` (the default), `md5`, `sha1`, `sha256` or `sha512`
    /// (HMAC).
    #[serde(default)]
    pub signature_method: Option<SignatureMethod>,
}

/// Vonage's signature methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureMethod {
    Md5hash,
    Md5,
    Sha1,
    Sha256,
    Sha512,
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
                FormItem::new(
                    "signatureSecret",
                    "Signature secret (signed delivery receipts)",
                    FormItemType::Text,
                )
                .confidential(),
                FormItem::new("signatureMethod", "Signature method", FormItemType::Select)
                    .select_items(
                        ["md5hash", "md5", "sha1", "sha256", "sha512"]
                            .map(|method| plugin_api::SelectItem {
                                value: method.into(),
                                title: method.to_owned(),
                            })
                            .into(),
                    ),
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
            let mut fields = vec![
                ("api_key", self.config.api_key.as_str()),
                ("api_secret", self.config.api_secret.as_str()),
                ("from", self.config.brand_name.as_str()),
                ("to", to),
                ("text", text.as_str()),
            ];
            // The delivery receipt for this message goes to the host, whatever the dashboard
            // says.
            if let Some(url) = progress.delivery_report_url() {
                fields.extend([("callback", url), ("status-report-req", "1")]);
            }
            return Ok(Step::http(HttpRequest::post_form(&self.send_url, &fields)));
        };
        if !response.is_success() {
            let message = format!(
                "Vonage answered {}: {}",
                response.status(),
                response.error_summary()
            );
            return Err(match response.status() {
                // Refused as a whole: the host may use its standby connector.
                401 | 403 => ConnectorError::invalid_config(message).not_accepted(),
                429 => ConnectorError::rate_limit_exceeded(message)
                    .with_retry_after_from(response)
                    .not_accepted(),
                503 => ConnectorError::general(message)
                    .with_retry_after_from(response)
                    .not_accepted(),
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
            // Throttled, bad credentials, a barred or empty account: Vonage took nothing, so
            // the host may use its standby connector.
            "1" => ConnectorError::rate_limit_exceeded(message).not_accepted(),
            "2" => ConnectorError::new(
                plugin_api::ConnectorErrorCode::InsufficientRequestParameters,
                message,
            ),
            "3" | "6" | "15" => ConnectorError::invalid_request_parameters(message),
            "4" | "8" => ConnectorError::invalid_config(message).not_accepted(),
            "9" | "29" => ConnectorError::usage_limit_exceeded(message).not_accepted(),
            _ => ConnectorError::general(message),
        })
    }

    fn delivery_reports() -> Option<DeliveryReportSupport> {
        Some(DeliveryReportSupport {
            signature: "the sig parameter with the account's signature secret, when \
                        signatureSecret is set (else only the host's token)"
                .to_owned(),
        })
    }

    /// A delivery receipt: `messageId`, `status`, `err-code`, ... as a query (GET), a form
    /// or JSON (POST), as the account is set; signed (`sig`) when it has a signature secret.
    fn parse_delivery_report(
        &self,
        report: &InboundReport,
    ) -> Result<Vec<DeliveryReport>, DeliveryReportError> {
        let parameters = receipt_parameters(report)?;
        if let Some(secret) = self
            .config
            .signature_secret
            .as_deref()
            .filter(|s| !s.is_empty())
        {
            let method = self
                .config
                .signature_method
                .unwrap_or(SignatureMethod::Md5hash);
            // A receipt by GET carries the report URL's own parameters (the host's `m` and
            // `t`) beside Vonage's; whether Vonage signs parameters that were already in the
            // callback URL is not documented, so a signature over either set is taken (both
            // need the secret).
            check_vonage_signature(&parameters, secret, method).or_else(|error| {
                let receipt_only: Vec<(String, String)> = parameters
                    .iter()
                    .filter(|(name, _)| !HOST_REPORT_URL_PARAMETERS.contains(&name.as_str()))
                    .cloned()
                    .collect();
                if receipt_only.len() == parameters.len() {
                    return Err(error);
                }
                check_vonage_signature(&receipt_only, secret, method)
            })?;
        }
        let parameter = |name: &str| {
            parameters
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.as_str())
        };
        let provider_status = parameter("status").ok_or_else(|| {
            DeliveryReportError::Malformed("no status in the delivery receipt".to_owned())
        })?;
        let status = match provider_status {
            "buffered" => DeliveryStatus::Queued,
            "accepted" => DeliveryStatus::Sent,
            "delivered" => DeliveryStatus::Delivered,
            "expired" => DeliveryStatus::Undelivered,
            "failed" | "rejected" => DeliveryStatus::Failed,
            _ => DeliveryStatus::Unknown,
        };
        let mut delivery = DeliveryReport::new(status, provider_status);
        if let Some(id) = parameter("messageId") {
            delivery = delivery.with_provider_message_id(id);
        }
        // `0` is Vonage's "no error".
        if let Some(code) = parameter("err-code").filter(|code| *code != "0") {
            delivery = delivery.with_error_code(code);
        }
        Ok(vec![delivery])
    }
}

plugin_api::export_sms_connector!(VonageSms);

/// The receipt's parameters: a JSON object's top-level values as text, or the form's, or the
/// query's.
/// The parameters of the host's report URL (`{public-url}/dlr/{connectorId}?m=&t=`).
const HOST_REPORT_URL_PARAMETERS: [&str; 2] = ["m", "t"];

fn receipt_parameters(
    report: &InboundReport,
) -> Result<Vec<(String, String)>, DeliveryReportError> {
    let is_json = report
        .header("content-type")
        .is_some_and(|value| value.to_ascii_lowercase().starts_with("application/json"));
    if is_json {
        let object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(report.body()).map_err(|error| {
                DeliveryReportError::Malformed(format!("the receipt is not a JSON object: {error}"))
            })?;
        return Ok(object
            .into_iter()
            .map(|(name, value)| {
                let text = match value {
                    serde_json::Value::String(text) => text,
                    other => other.to_string(),
                };
                (name, text)
            })
            .collect());
    }
    let form = report.form_pairs();
    Ok(if form.is_empty() {
        report.query_pairs()
    } else {
        form
    })
}

/// Vonage's signature, as its SDKs compute it: every parameter but `sig`, sorted by name, as
/// `&name=value` with `&` and `=` in values replaced by `_`; then the MD5 of that and the
/// secret (`md5hash`), or its HMAC keyed with the secret; lower-case hex.
fn check_vonage_signature(
    parameters: &[(String, String)],
    secret: &str,
    method: SignatureMethod,
) -> Result<(), DeliveryReportError> {
    use hmac::Mac;
    use sha2::Digest;
    let signature = parameters
        .iter()
        .find(|(name, _)| name == "sig")
        .map(|(_, value)| value.to_ascii_lowercase())
        .ok_or_else(|| {
            DeliveryReportError::BadSignature(
                "the receipt has no sig, and this connector has a signature secret".to_owned(),
            )
        })?;
    let mut signed: Vec<&(String, String)> = parameters
        .iter()
        .filter(|(name, _)| name != "sig")
        .collect();
    signed.sort();
    let text: String = signed
        .into_iter()
        .map(|(name, value)| format!("&{name}={}", value.replace(['&', '='], "_")))
        .collect();
    fn hmac_hex<M: Mac + hmac::digest::KeyInit>(secret: &str, text: &str) -> String {
        // HMAC takes a key of any length; an empty one still gives a MAC no sender matches.
        match <M as hmac::digest::KeyInit>::new_from_slice(secret.as_bytes()) {
            Ok(mut mac) => {
                mac.update(text.as_bytes());
                hex(&mac.finalize().into_bytes())
            }
            Err(_) => String::new(),
        }
    }
    let expected = match method {
        SignatureMethod::Md5hash => hex(&md5::Md5::digest(format!("{text}{secret}"))),
        SignatureMethod::Md5 => hmac_hex::<hmac::Hmac<md5::Md5>>(secret, &text),
        SignatureMethod::Sha1 => hmac_hex::<hmac::Hmac<sha1::Sha1>>(secret, &text),
        SignatureMethod::Sha256 => hmac_hex::<hmac::Hmac<sha2::Sha256>>(secret, &text),
        SignatureMethod::Sha512 => hmac_hex::<hmac::Hmac<sha2::Sha512>>(secret, &text),
    };
    // Both are hex of one length for a method: compare every byte, whatever matches first.
    let same = !expected.is_empty()
        && expected.len() == signature.len()
        && expected
            .bytes()
            .zip(signature.bytes())
            .fold(0u8, |difference, (a, b)| difference | (a ^ b))
            == 0;
    if same {
        Ok(())
    } else {
        Err(DeliveryReportError::BadSignature(
            "sig does not match: not signed with this connector's signature secret and method"
                .to_owned(),
        ))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

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

    /// A receipt as Vonage signs it; the signatures computed with Python's hashlib and hmac
    /// over the documented string.
    const RECEIPT: &str = "msisdn=12015550123&to=Acme&network-code=310090&messageId=0A0000001234ABCD&price=0.0333&status=delivered&scts=2012101210&err-code=0&message-timestamp=2026-12-06+19%3A00%3A00&timestamp=1796583600&nonce=a%26b%3Dc";

    fn signed_connector(method: &str) -> VonageSms {
        let config = json!({"apiKey": "key", "apiSecret": "secret", "brandName": "Acme",
            "signatureSecret": "vonage-signature-secret", "signatureMethod": method,
            "templates": [{"usageType": "Generic", "content": "{{code}}"}]});
        plugin_api::validate_config::<VonageSms>(config).unwrap().1
    }

    fn receipt(query: &str) -> InboundReport {
        InboundReport::new(
            "GET",
            format!("https://hosts.example.com/dlr/abc?m=1&t=x&{query}"),
        )
    }

    #[test]
    fn signed_receipts_are_checked_with_each_method_and_read() {
        // The host's own m and t are in the URL too: they are not part of Vonage's signature.
        let receipt_without_host_token = |query: &str| {
            InboundReport::new("POST", "https://hosts.example.com/dlr/abc")
                .with_header("Content-Type", "application/x-www-form-urlencoded")
                .with_body(query.to_owned())
        };
        for (method, sig) in [
            ("md5hash", "b06986c5ca47d1a85f1529feac94933b"),
            (
                "sha256",
                "A7CBACDA60BCE160BAA2B04CBAD661840CA98BF72D5C8B432B9D77522C202624",
            ),
        ] {
            let connector = signed_connector(method);
            let reports = connector
                .parse_delivery_report(&receipt_without_host_token(&format!("{RECEIPT}&sig={sig}")))
                .unwrap();
            assert_eq!(
                reports,
                [DeliveryReport::new(DeliveryStatus::Delivered, "delivered")
                    .with_provider_message_id("0A0000001234ABCD")],
                "{method}"
            );
            let forged = RECEIPT.replace("status=delivered", "status=failed");
            assert!(matches!(
                connector.parse_delivery_report(&receipt_without_host_token(&format!(
                    "{forged}&sig={sig}"
                ))),
                Err(DeliveryReportError::BadSignature(_))
            ));
            assert!(
                matches!(
                    connector.parse_delivery_report(&receipt_without_host_token(RECEIPT)),
                    Err(DeliveryReportError::BadSignature(_))
                ),
                "unsigned"
            );
        }
    }

    #[test]
    fn unsigned_receipts_are_read_when_no_secret_is_set_and_the_callback_is_requested() {
        let connector = connector();
        let read = |query: &str| connector.parse_delivery_report(&receipt(query));
        assert_eq!(
            read("messageId=X1&status=expired&err-code=5").unwrap(),
            [DeliveryReport::new(DeliveryStatus::Undelivered, "expired")
                .with_provider_message_id("X1")
                .with_error_code("5")]
        );
        assert_eq!(
            read("status=buffered").unwrap()[0].status,
            DeliveryStatus::Queued
        );
        assert_eq!(
            read("status=accepted").unwrap()[0].status,
            DeliveryStatus::Sent
        );
        assert_eq!(
            read("status=rejected").unwrap()[0].status,
            DeliveryStatus::Failed
        );
        assert!(matches!(
            read("messageId=X1"),
            Err(DeliveryReportError::Malformed(_))
        ));
        let json = connector
            .parse_delivery_report(
                &InboundReport::new("POST", "https://hosts.example.com/dlr/abc")
                    .with_header("Content-Type", "application/json")
                    .with_body(r#"{"messageId": "X2", "status": "delivered", "err-code": 0}"#),
            )
            .unwrap();
        assert_eq!(json[0].provider_message_id.as_deref(), Some("X2"));

        let context = plugin_api::SendContext::new(
            "id",
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
            body.contains("callback=https%3A%2F%2Fhosts.example.com%2Fdlr%2Fabc%3Fm%3D1%26t%3Dx"),
            "{body}"
        );
        assert!(body.contains("status-report-req=1"), "{body}");
    }
}
