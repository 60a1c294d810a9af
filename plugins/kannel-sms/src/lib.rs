//! Kannel's HTTP `sendsms` interface, the usual bridge to SMPP operators (logto issue 7774):
//! `GET {baseUrl}/cgi-bin/sendsms?username=&password=&from=&to=&text=[&dlr-mask=&dlr-url=]`.
//! Kannel answers `202 0: Accepted for delivery` (or `200 0: Sent`); `403` for bad credentials.

use plugin_api::{
    english, find_template_for, render_template, require_http_url, require_non_empty,
    ConnectorError, ConnectorMetadata, DeliveryReport, DeliveryReportError, DeliveryReportSupport,
    DeliveryStatus, FormItem, FormItemType, HttpRequest, InboundReport, SendProgress, SendReceipt,
    SmsConnector, SmsMessage, SmsTemplate, Step,
};

/// Kannel's `dlr-mask` for every report type: delivered (1), undelivered (2), queued on the
/// SMSC (4), accepted by the SMSC (8), rejected by it (16).
const ALL_REPORTS: &str = "31";
/// The host's delivery-report URL's parameters Kannel fills in (`%d`, `%A`, `%F`).
const STATUS: &str = "kannel_status";
const ANSWER: &str = "kannel_answer";
const SMSC_ID: &str = "kannel_smsc_id";
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
            // The operator's own dlr-url wins; else the host's, with Kannel's escapes for the
            // report's type (%d), the SMSC's answer (%A) and its message id (%F).
            let host_dlr_url = progress
                .delivery_report_url()
                .filter(|_| self.config.dlr_url.is_none())
                .map(|url| format!("{url}&{STATUS}=%d&{ANSWER}=%A&{SMSC_ID}=%F"));
            let dlr_url = self.config.dlr_url.as_deref().or(host_dlr_url.as_deref());
            let dlr_mask = dlr_mask
                .as_deref()
                .or(host_dlr_url.as_ref().map(|_| ALL_REPORTS));
            if let (Some(mask), Some(url)) = (dlr_mask, dlr_url) {
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
            // Refused before Kannel queued anything: the host may use its standby connector.
            401 | 403 => Err(ConnectorError::invalid_config(message).not_accepted()),
            429 | 503 => Err(ConnectorError::rate_limit_exceeded(message)
                .with_retry_after_from(response)
                .not_accepted()),
            400..=499 => Err(ConnectorError::invalid_request_parameters(message)),
            _ => Err(ConnectorError::general(message)),
        }
    }

    fn delivery_reports() -> Option<DeliveryReportSupport> {
        Some(DeliveryReportSupport {
            signature: "none: Kannel signs nothing; the host's token in the dlr-url is the check"
                .to_owned(),
        })
    }

    /// Kannel calls the `dlr-url` with `GET`, the report's type in `%d`.
    fn parse_delivery_report(
        &self,
        report: &InboundReport,
    ) -> Result<Vec<DeliveryReport>, DeliveryReportError> {
        let kind = report.parameter(STATUS).ok_or_else(|| {
            DeliveryReportError::Malformed(format!("no {STATUS} in the report's URL"))
        })?;
        let status = match kind.trim().parse::<u8>() {
            Ok(1) => DeliveryStatus::Delivered,
            Ok(2) => DeliveryStatus::Undelivered,
            Ok(4) => DeliveryStatus::Queued,
            Ok(8) => DeliveryStatus::Sent,
            Ok(16) => DeliveryStatus::Failed,
            Ok(_) => DeliveryStatus::Unknown,
            Err(_) => {
                return Err(DeliveryReportError::Malformed(format!(
                    "{STATUS} is not a number: {kind:?}"
                )))
            }
        };
        let answer = report.parameter(ANSWER).unwrap_or_default();
        let mut delivery = DeliveryReport::new(
            status,
            if answer.is_empty() {
                kind.clone()
            } else {
                format!("{kind}: {answer}")
            },
        );
        if let Some(id) = report.parameter(SMSC_ID) {
            delivery = delivery.with_provider_message_id(id);
        }
        Ok(vec![delivery])
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
    fn the_hosts_report_url_goes_to_kannel_with_its_escapes_and_reports_are_read() {
        let context = plugin_api::SendContext::new(
            "0193a5b2-7c4e-7d4f-9a1b-2c3d4e5f6a7b",
            Some("https://hosts.example.com/dlr/abc?m=1&t=x".to_owned()),
        );
        let request = connector(json!({}))
            .step(&message(), SendProgress::start().with_context(&context))
            .unwrap()
            .request()
            .cloned()
            .unwrap();
        let query: std::collections::HashMap<String, String> =
            form_urlencoded_pairs(request.url().split_once('?').unwrap().1);
        assert_eq!(query["dlr-mask"], "31");
        assert_eq!(
            query["dlr-url"],
            "https://hosts.example.com/dlr/abc?m=1&t=x&kannel_status=%d&kannel_answer=%A&kannel_smsc_id=%F"
        );
        // The operator's own dlr-url wins.
        let own = connector(json!({"dlrMask": 3, "dlrUrl": "http://h/dlr?s=%d"}))
            .step(&message(), SendProgress::start().with_context(&context))
            .unwrap()
            .request()
            .cloned()
            .unwrap();
        let query = form_urlencoded_pairs(own.url().split_once('?').unwrap().1);
        assert_eq!(
            (query["dlr-mask"].as_str(), query["dlr-url"].as_str()),
            ("3", "http://h/dlr?s=%d")
        );

        let kannel = connector(json!({}));
        let report = |query: &str| {
            kannel.parse_delivery_report(&InboundReport::new(
                "GET",
                format!("https://hosts.example.com/dlr/abc?m=1&t=x&{query}"),
            ))
        };
        assert_eq!(
            report("kannel_status=1&kannel_answer=ACK%2F&kannel_smsc_id=ab12").unwrap(),
            [DeliveryReport::new(DeliveryStatus::Delivered, "1: ACK/")
                .with_provider_message_id("ab12")]
        );
        assert_eq!(
            report("kannel_status=2").unwrap()[0].status,
            DeliveryStatus::Undelivered
        );
        assert_eq!(
            report("kannel_status=8").unwrap()[0].status,
            DeliveryStatus::Sent
        );
        assert_eq!(
            report("kannel_status=16").unwrap()[0].status,
            DeliveryStatus::Failed
        );
        assert!(matches!(
            report("kannel_status=%d"),
            Err(DeliveryReportError::Malformed(_))
        ));
        assert!(matches!(report(""), Err(DeliveryReportError::Malformed(_))));
    }

    fn form_urlencoded_pairs(query: &str) -> std::collections::HashMap<String, String> {
        form_urlencoded::parse(query.as_bytes())
            .map(|(name, value)| (name.into_owned(), value.into_owned()))
            .collect()
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
