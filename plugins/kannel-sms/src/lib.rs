//! Kannel's HTTP `sendsms` interface, the usual bridge to SMPP operators (logto issue 7774):
//! `GET {baseUrl}/cgi-bin/sendsms?username=&password=&from=&to=&text=[&dlr-mask=&dlr-url=]`.
//! Kannel answers `202 0: Accepted for delivery` (or `200 0: Sent`); `403` for bad credentials.

use plugin_api::{
    english, find_template_for, render_template, require_http_url, require_non_empty,
    ConnectorError, ConnectorMetadata, FormItem, FormItemType, HttpRequest, SendProgress,
    SendReceipt, SmsConnector, SmsMessage, SmsTemplate, Step,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KannelConfig {
    /// The smsbox's sendsms address, e.g. `http://127.0.0.1:13013`.
    pub base_url: String,
    pub username: String,
    pub password: String,
    #[serde(default)]
    pub from: Option<String>,
    /// Delivery reports wanted (Kannel's `dlr-mask`, e.g. 31 for all).
    #[serde(default)]
    pub dlr_mask: Option<u8>,
    /// Where Kannel reports delivery (`%d` is replaced by the status).
    #[serde(default)]
    pub dlr_url: Option<String>,
    pub templates: Vec<SmsTemplate>,
}

pub struct KannelSms {
    config: KannelConfig,
    sendsms_url: String,
}

impl SmsConnector for KannelSms {
    type Config = KannelConfig;

    fn metadata() -> ConnectorMetadata {
        ConnectorMetadata {
            id: "kannel-sms".to_owned(),
            target: "kannel-sms".to_owned(),
            name: english("Kannel SMS gateway"),
            description: english(
                "Sends SMS through a Kannel smsbox (sendsms), the bridge to SMPP operators.",
            ),
            readme: include_str!("../README.md").to_owned(),
            logo: None,
            logo_dark: None,
            config_template: include_str!("../config-template.json").to_owned(),
            form_items: vec![
                FormItem::new("baseUrl", "smsbox sendsms URL", FormItemType::Text)
                    .required()
                    .placeholder("http://127.0.0.1:13013"),
                FormItem::new("username", "sendsms user", FormItemType::Text).required(),
                FormItem::new("password", "sendsms password", FormItemType::Text)
                    .required()
                    .confidential(),
                FormItem::new("from", "Sender", FormItemType::Text),
                FormItem::new("dlrMask", "Delivery report mask", FormItemType::Number),
                FormItem::new("dlrUrl", "Delivery report URL", FormItemType::Text),
                FormItem::new("templates", "Templates", FormItemType::Json).required(),
            ],
        }
    }

    fn from_config(config: KannelConfig) -> Result<Self, ConnectorError> {
        require_non_empty("username", &config.username)?;
        require_non_empty("password", &config.password)?;
        if config.dlr_mask.is_some() != config.dlr_url.is_some() {
            require_non_empty(
                if config.dlr_mask.is_some() {
                    "dlrUrl"
                } else {
                    "dlrMask"
                },
                "",
            )?;
        }
        let sendsms_url = format!(
            "{}/cgi-bin/sendsms",
            require_http_url("baseUrl", &config.base_url)?
        );
        Ok(Self {
            config,
            sendsms_url,
        })
    }

    fn step(&self, message: &SmsMessage, progress: SendProgress) -> Result<Step, ConnectorError> {
        let Some(response) = progress.last_response() else {
            let text = render_template(
                &find_template_for(&self.config.templates, message)?.content,
                message.payload(),
            );
            let dlr_mask = self.config.dlr_mask.map(|mask| mask.to_string());
            let mut query = vec![
                ("username", self.config.username.as_str()),
                ("password", self.config.password.as_str()),
                ("to", message.to()),
                ("text", text.as_str()),
            ];
            if let Some(from) = self.config.from.as_deref() {
                query.push(("from", from));
            }
            if let (Some(mask), Some(url)) = (dlr_mask.as_deref(), self.config.dlr_url.as_deref()) {
                query.extend([("dlr-mask", mask), ("dlr-url", url)]);
            }
            return Ok(Step::http(HttpRequest::get_with_query(
                &self.sendsms_url,
                &query,
            )));
        };
        // Kannel answers in plain text; the summary is a short excerpt of it.
        let message = format!(
            "Kannel answered {}: {}",
            response.status(),
            response.error_summary()
        );
        if progress.notes_wanted() {
            progress.note(format!(
                "Kannel answered {}: {}",
                response.status(),
                response.body_excerpt(80)
            ));
        }
        match response.status() {
            200 | 202 if response.body_text().trim_start().starts_with('0') => {
                Ok(Step::done(SendReceipt::new()))
            }
            200 | 202 => Err(ConnectorError::invalid_response(message)),
            401 | 403 => Err(ConnectorError::invalid_config(message)),
            429 | 503 => {
                Err(ConnectorError::rate_limit_exceeded(message).with_retry_after_from(response))
            }
            400..=499 => Err(ConnectorError::invalid_request_parameters(message)),
            _ => Err(ConnectorError::general(message)),
        }
    }
}

plugin_api::export_sms_connector!(KannelSms);

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_api::{run_send, ConnectorErrorCode, HttpResponse, TemplateType};
    use serde_json::json;

    fn connector(extra: serde_json::Value) -> KannelSms {
        let mut config = json!({"baseUrl": "http://127.0.0.1:13013/", "username": "tester", "password": "p&ss", "from": "Acme",
            "templates": [{"usageType": "Generic", "content": "Code {{code}}"}]});
        config
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().cloned().unwrap());
        plugin_api::validate_config::<KannelSms>(config).unwrap().1
    }

    fn message() -> SmsMessage {
        SmsMessage::new(
            "+12015550123",
            TemplateType::SignIn,
            json!({"code": "777"}).as_object().cloned().unwrap(),
        )
    }

    fn answer(status: u16, body: &str) -> HttpResponse {
        HttpResponse::new(status, body.as_bytes().to_vec())
    }

    #[test]
    fn builds_the_sendsms_query() {
        let request = connector(json!({"dlrMask": 31, "dlrUrl": "http://h/dlr?s=%d"}))
            .step(&message(), SendProgress::start())
            .unwrap()
            .request()
            .cloned()
            .expect("a request");
        assert_eq!(request.method(), "GET");
        assert_eq!(
            request.url(),
            "http://127.0.0.1:13013/cgi-bin/sendsms?username=tester&password=p%26ss&to=%2B12015550123&text=Code+777&from=Acme&dlr-mask=31&dlr-url=http%3A%2F%2Fh%2Fdlr%3Fs%3D%25d"
        );
    }

    #[test]
    fn maps_kannel_answers() {
        let send = |status, body: &'static str| {
            run_send(
                &connector(json!({})),
                &message(),
                move |_| answer(status, body),
                3,
            )
        };
        assert!(send(202, "0: Accepted for delivery").is_ok());
        assert!(send(200, "0: Sent.").is_ok());
        assert_eq!(
            send(403, "Authorization failed for sendsms")
                .unwrap_err()
                .code,
            ConnectorErrorCode::InvalidConfig
        );
        assert_eq!(
            send(400, "Missing receiver number").unwrap_err().code,
            ConnectorErrorCode::InvalidRequestParameters
        );
        assert_eq!(
            send(503, "Temporarily failed").unwrap_err().code,
            ConnectorErrorCode::RateLimitExceeded
        );
        assert_eq!(
            send(429, "Too Many Requests").unwrap_err().code,
            ConnectorErrorCode::RateLimitExceeded
        );
        assert_eq!(
            send(202, "3: Queued for later delivery?").unwrap_err().code,
            ConnectorErrorCode::InvalidResponse
        );
    }

    #[test]
    fn delivery_reports_need_both_mask_and_url() {
        let config = json!({"baseUrl": "http://k", "username": "u", "password": "p", "dlrMask": 31, "templates": []});
        let error = plugin_api::validate_config::<KannelSms>(config)
            .err()
            .unwrap();
        assert_eq!(error.data.unwrap()["errors"][0]["field"], "dlrUrl");
        let template: serde_json::Value =
            serde_json::from_str(include_str!("../config-template.json")).unwrap();
        assert!(plugin_api::validate_config::<KannelSms>(template).is_ok());
    }
}
