//! The conformance kit can fail: a well-behaved example connector passes, and each flaw
//! planted in it is reported under its rule, and only there.

use plugin_api::conformance::{self, Conformance, ConformanceReport, Rule};
use plugin_api::{
    english, find_template_for, render_template, require_http_url, require_non_empty,
    ConnectorError, ConnectorMetadata, FormItem, FormItemType, HttpRequest, SendProgress,
    SendReceipt, SmsConnector, SmsMessage, SmsTemplate, Step,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Flaws an [`Example`] can be built with, one bit each.
const PANICS_ON_BINARY: u32 = 1;
const AUTH_AS_GENERAL: u32 = 1 << 1;
const SECRET_IN_CLEAR: u32 = 1 << 2;
const README_MISSES_KEY: u32 = 1 << 3;
const NO_FALLBACK: u32 = 1 << 4;
const GENERAL_FOR_MISSING_TEMPLATE: u32 = 1 << 5;
const FOREIGN_URL: u32 = 1 << 6;
const ANY_STATUS_SUCCEEDS: u32 = 1 << 7;
const GARBAGE_2XX_SUCCEEDS: u32 = 1 << 8;
const RATE_LIMIT_AS_GENERAL: u32 = 1 << 9;
const FORM_ITEM_TYPO: u32 = 1 << 10;
const MISSING_FORM_ITEM: u32 = 1 << 11;
const BAD_METADATA: u32 = 1 << 12;
const TEMPLATE_INVALID: u32 = 1 << 13;
/// Not a flaw: a token request before the send.
const TOKEN_FIRST: u32 = 1 << 14;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ExampleConfig {
    base_url: String,
    api_key: String,
    sender: String,
    templates: Vec<SmsTemplate>,
}

/// A connector for a made-up provider: `POST {baseUrl}/messages` with a bearer key, answered
/// `201 {"id": ...}`; with [`TOKEN_FIRST`], `GET {baseUrl}/token` first.
struct Example<const FLAWS: u32> {
    config: ExampleConfig,
    base_url: String,
}

impl<const FLAWS: u32> Example<FLAWS> {
    const fn has(flaw: u32) -> bool {
        FLAWS & flaw != 0
    }

    fn template(&self, message: &SmsMessage) -> Result<&SmsTemplate, ConnectorError> {
        let found = if Self::has(NO_FALLBACK) {
            self.config
                .templates
                .iter()
                .find(|template| template.usage_type == message.template_type())
                .ok_or_else(|| ConnectorError::template_not_found("no template"))
        } else {
            find_template_for(&self.config.templates, message)
        };
        found.map_err(|error| match Self::has(GENERAL_FOR_MISSING_TEMPLATE) {
            true => ConnectorError::general(error.message),
            false => error,
        })
    }

    fn send_request(&self, message: &SmsMessage, token: &str) -> Result<Step, ConnectorError> {
        let text = render_template(&self.template(message)?.content, message.payload());
        let url = match Self::has(FOREIGN_URL) {
            true => "https://elsewhere.example/messages".to_owned(),
            false => format!("{}/messages", self.base_url),
        };
        let body = json!({"to": message.to(), "from": self.config.sender, "text": text});
        Ok(Step::http_with_state(
            HttpRequest::post_json(url, &body).header("Authorization", format!("Bearer {token}")),
            json!({"phase": "send"}),
        ))
    }
}

#[derive(Deserialize)]
struct Sent {
    #[allow(dead_code)]
    id: String,
}

#[derive(Deserialize)]
struct Token {
    token: String,
}

impl<const FLAWS: u32> SmsConnector for Example<FLAWS> {
    type Config = ExampleConfig;

    fn metadata() -> ConnectorMetadata {
        let readme = if Self::has(README_MISSES_KEY) {
            "# Example\n\n| `baseUrl` | `apiKey` | `templates` |"
        } else {
            "# Example\n\n| `baseUrl` | `apiKey` | `sender` | `templates` |"
        };
        let mut config_template = json!({
            "baseUrl": "https://api.example.com/v1", "apiKey": "your key", "sender": "Acme",
            "templates": [{"usageType": "Generic", "content": "Your code is {{code}}"}]
        });
        if Self::has(TEMPLATE_INVALID) {
            config_template["sender"] = json!(7);
        }
        let mut api_key = FormItem::new(
            if Self::has(FORM_ITEM_TYPO) {
                "apikey"
            } else {
                "apiKey"
            },
            "API key",
            FormItemType::Text,
        )
        .required();
        if !Self::has(SECRET_IN_CLEAR) {
            api_key = api_key.confidential();
        }
        let mut form_items = vec![
            FormItem::new("baseUrl", "Base URL", FormItemType::Text).required(),
            api_key,
            FormItem::new("sender", "Sender", FormItemType::Text).required(),
            FormItem::new("templates", "Templates", FormItemType::Json).required(),
        ];
        if Self::has(MISSING_FORM_ITEM) {
            form_items.retain(|item| item.key != "sender");
        }
        ConnectorMetadata {
            id: "example-sms".to_owned(),
            target: "example".to_owned(),
            name: english("Example"),
            description: english(if Self::has(BAD_METADATA) {
                " "
            } else {
                "An example."
            }),
            readme: readme.to_owned(),
            logo: None,
            logo_dark: None,
            config_template: config_template.to_string(),
            form_items,
        }
    }

    fn from_config(config: ExampleConfig) -> Result<Self, ConnectorError> {
        let base_url = require_http_url("baseUrl", &config.base_url)?;
        require_non_empty("apiKey", &config.api_key)?;
        require_non_empty("sender", &config.sender)?;
        Ok(Self { config, base_url })
    }

    fn step(&self, message: &SmsMessage, progress: SendProgress) -> Result<Step, ConnectorError> {
        let phase = progress.state()["phase"].as_str().map(str::to_owned);
        let Some(response) = progress.last_response() else {
            if Self::has(TOKEN_FIRST) {
                // The template is checked before anything is sent.
                self.template(message)?;
                let request = HttpRequest::get(format!("{}/token", self.base_url))
                    .header("Authorization", format!("Bearer {}", self.config.api_key));
                return Ok(Step::http_with_state(request, json!({"phase": "token"})));
            }
            return self.send_request(message, &self.config.api_key);
        };
        if Self::has(PANICS_ON_BINARY) && response.body_text().contains('\u{FFFD}') {
            panic!("the body is not UTF-8");
        }
        if Self::has(ANY_STATUS_SUCCEEDS) {
            return Ok(Step::done(SendReceipt::new()));
        }
        let text = response.body_excerpt(100);
        match response.status() {
            401 if Self::has(AUTH_AS_GENERAL) => Err(ConnectorError::general(text)),
            401 | 403 => Err(ConnectorError::invalid_config(text)),
            429 if Self::has(RATE_LIMIT_AS_GENERAL) => Err(ConnectorError::general(text)),
            429 => Err(ConnectorError::rate_limit_exceeded(text)),
            _ if !response.is_success() => Err(ConnectorError::general(text)),
            _ if phase.as_deref() == Some("token") => {
                let token: Token = response.json()?;
                self.send_request(message, &token.token)
            }
            _ if Self::has(GARBAGE_2XX_SUCCEEDS) => Ok(Step::done(SendReceipt::new())),
            _ => {
                let _sent: Sent = response.json()?;
                Ok(Step::done(SendReceipt::new()))
            }
        }
    }
}

fn sample_config() -> Value {
    json!({
        "baseUrl": "https://api.example.com/v1", "apiKey": "test-key", "sender": "Acme",
        "templates": [{"usageType": "Generic", "content": "Your code is {{code}}"}]
    })
}

fn kit() -> Conformance {
    Conformance::new(&sample_config()).success_response(201, r#"{"id": "m-1"}"#)
}

fn names(rules: &[Rule]) -> Vec<&'static str> {
    rules.iter().map(|rule| rule.name()).collect()
}

#[track_caller]
fn assert_fails_exactly(report: ConformanceReport, expected: &[Rule]) {
    assert_eq!(names(&report.failed_rules()), names(expected), "\n{report}");
    let text = report.to_string();
    for rule in expected {
        assert!(text.contains(&format!("[{rule}] ")), "{text}");
    }
    assert!(text.contains("    fix: "), "{text}");
}

#[test]
fn the_example_conforms() {
    let report = kit().run::<Example<0>>();
    assert!(report.passed(), "{report}");
    assert_eq!(report.notes(), &[], "{report}");
    kit().assert_conforms::<Example<0>>();
}

#[test]
fn a_broken_connector_fails_each_of_its_rules_and_assert_conforms_lists_them_all() {
    type Broken =
        Example<{ PANICS_ON_BINARY | AUTH_AS_GENERAL | SECRET_IN_CLEAR | README_MISSES_KEY }>;
    let report = kit().check::<Broken>().unwrap_err();
    assert_fails_exactly(
        report.clone(),
        &[
            Rule::SecretsAreConfidential,
            Rule::ReadmeMentionsConfigKeys,
            Rule::AuthErrorsAreInvalidConfig,
            Rule::NoPanics,
        ],
    );
    let text = report.to_string();
    assert!(text.contains("`apiKey` is named like a secret"), "{text}");
    assert!(
        text.contains("does not mention config key `sender`"),
        "{text}"
    );
    assert!(
        text.contains("the first request answered 401 (expected invalid_config)"),
        "{text}"
    );
    assert!(
        text.contains("answered with random binary bytes, at statuses 100, 200, 201"),
        "{text}"
    );
    assert!(text.contains("the body is not UTF-8"), "{text}");

    let panic = std::panic::catch_unwind(|| kit().assert_conforms::<Broken>()).unwrap_err();
    let message = panic.downcast_ref::<String>().unwrap();
    for rule in [
        "secrets_are_confidential",
        "readme_mentions_config_keys",
        "auth_errors_are_invalid_config",
        "no_panics",
    ] {
        assert!(message.contains(rule), "{message}");
    }
}

#[test]
fn each_flaw_is_reported_under_its_rule_only() {
    assert_fails_exactly(kit().run::<Example<PANICS_ON_BINARY>>(), &[Rule::NoPanics]);
    assert_fails_exactly(
        kit().run::<Example<AUTH_AS_GENERAL>>(),
        &[Rule::AuthErrorsAreInvalidConfig],
    );
    assert_fails_exactly(
        kit().run::<Example<SECRET_IN_CLEAR>>(),
        &[Rule::SecretsAreConfidential],
    );
    assert_fails_exactly(
        kit().run::<Example<README_MISSES_KEY>>(),
        &[Rule::ReadmeMentionsConfigKeys],
    );
    assert_fails_exactly(
        kit().run::<Example<NO_FALLBACK>>(),
        &[Rule::UsageTypesFallBackToGeneric],
    );
    assert_fails_exactly(
        kit().run::<Example<GENERAL_FOR_MISSING_TEMPLATE>>(),
        &[Rule::MissingTemplateIsTemplateNotFound],
    );
    assert_fails_exactly(
        kit().run::<Example<FOREIGN_URL>>(),
        &[Rule::FirstRequestTargetsConfigUrl],
    );
    assert_fails_exactly(
        kit().run::<Example<ANY_STATUS_SUCCEEDS>>(),
        &[
            Rule::AuthErrorsAreInvalidConfig,
            Rule::RateLimitIsRateLimitExceeded,
            Rule::FailuresAreErrors,
        ],
    );
    assert_fails_exactly(
        kit().run::<Example<GARBAGE_2XX_SUCCEEDS>>(),
        &[Rule::FailuresAreErrors],
    );
    assert!(kit()
        .accepts_any_2xx_body()
        .run::<Example<GARBAGE_2XX_SUCCEEDS>>()
        .passed());
    assert_fails_exactly(
        kit().run::<Example<RATE_LIMIT_AS_GENERAL>>(),
        &[Rule::RateLimitIsRateLimitExceeded],
    );
    // The form says `apikey`: no such config key, and `apiKey` (required, a secret) has no item.
    assert_fails_exactly(
        kit().run::<Example<FORM_ITEM_TYPO>>(),
        &[
            Rule::FormKeysAreConfigKeys,
            Rule::RequiredKeysHaveFormItems,
            Rule::SecretsAreConfidential,
        ],
    );
    assert_fails_exactly(
        kit().run::<Example<MISSING_FORM_ITEM>>(),
        &[Rule::RequiredKeysHaveFormItems],
    );
    assert_fails_exactly(kit().run::<Example<BAD_METADATA>>(), &[Rule::MetadataValid]);
    assert_fails_exactly(
        kit().run::<Example<TEMPLATE_INVALID>>(),
        &[Rule::ConfigTemplateValid],
    );
}

#[test]
fn the_default_success_answer_and_a_bad_sample_config_are_reported() {
    let report = conformance::check::<Example<0>>(&sample_config()).unwrap_err();
    assert_fails_exactly(report.clone(), &[Rule::SuccessGivesReceipt]);
    assert!(
        report
            .to_string()
            .contains("(200 {}), the send ended with invalid_response"),
        "{report}"
    );

    let report = conformance::check::<Example<0>>(&json!({"baseUrl": "nope"})).unwrap_err();
    assert_eq!(
        names(&report.failed_rules()),
        ["sample_config_valid"],
        "{report}"
    );
    assert!(report
        .notes()
        .iter()
        .any(|note| note.rule == Rule::NoPanics && note.text.contains("does not validate")));
}

#[test]
fn a_send_of_several_requests_gets_a_success_answer_for_each() {
    let kit = Conformance::new(&sample_config())
        .success_response(200, r#"{"token": "t-1"}"#)
        .success_response(201, r#"{"id": "m-1"}"#);
    kit.assert_conforms::<Example<TOKEN_FIRST>>();
    let report = kit
        .check::<Example<{ TOKEN_FIRST | PANICS_ON_BINARY }>>()
        .unwrap_err();
    assert_fails_exactly(report.clone(), &[Rule::NoPanics]);
    let text = report.to_string();
    assert!(
        text.contains("when the first request was answered"),
        "{text}"
    );
    assert!(text.contains("when request 2 was answered"), "{text}");
}

#[test]
fn a_name_that_only_looks_like_a_secret_can_be_exempted() {
    let report = kit().not_secret("apiKey").run::<Example<SECRET_IN_CLEAR>>();
    assert!(report.passed(), "{report}");
}
