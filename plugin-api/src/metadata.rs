//! Connector metadata, shaped like Logto's `ConnectorMetadata`, plus the checks the host
//! applies to metadata it reads from a plugin file.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// Text in several languages, keyed by locale tag. `en` is required.
pub type I18nText = BTreeMap<String, String>;

/// Builds an [`I18nText`] with only English, the common case.
pub fn english(text: impl Into<String>) -> I18nText {
    BTreeMap::from([("en".to_owned(), text.into())])
}

/// What a vendor describes about its connector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectorMetadata {
    /// The factory id, for example `twilio-short-message-service`.
    pub id: String,
    /// The vendor, for example `twilio-sms`.
    pub target: String,
    pub name: I18nText,
    pub description: I18nText,
    /// Markdown shown to operators, usually `include_str!("../README.md")`.
    pub readme: String,
    /// A data URI or SVG text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo_dark: Option<String>,
    /// An example config, as JSON text.
    pub config_template: String,
    pub form_items: Vec<FormItem>,
}

/// The kinds of form field Logto's console knows how to draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum FormItemType {
    Text,
    Number,
    MultilineText,
    Switch,
    Select,
    MultiSelect,
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SelectItem {
    pub value: serde_json::Value,
    pub title: String,
}

/// One field of the config form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FormItem {
    pub key: String,
    pub label: String,
    #[serde(rename = "type")]
    pub item_type: FormItemType,
    #[serde(default)]
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_value: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placeholder: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tooltip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub select_items: Option<Vec<SelectItem>>,
    /// Secrets: the host masks these in every response and log line.
    #[serde(default)]
    pub is_confidential: bool,
}

impl FormItem {
    pub fn new(key: impl Into<String>, label: impl Into<String>, item_type: FormItemType) -> Self {
        Self {
            key: key.into(),
            label: label.into(),
            item_type,
            required: false,
            default_value: None,
            placeholder: None,
            description: None,
            tooltip: None,
            select_items: None,
            is_confidential: false,
        }
    }

    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    pub fn confidential(mut self) -> Self {
        self.is_confidential = true;
        self
    }

    pub fn placeholder(mut self, placeholder: impl Into<String>) -> Self {
        self.placeholder = Some(placeholder.into());
        self
    }

    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    pub fn tooltip(mut self, tooltip: impl Into<String>) -> Self {
        self.tooltip = Some(tooltip.into());
        self
    }

    pub fn default_value(mut self, value: serde_json::Value) -> Self {
        self.default_value = Some(value);
        self
    }

    pub fn select_items(mut self, items: Vec<SelectItem>) -> Self {
        self.select_items = Some(items);
        self
    }
}

/// Metadata as it crosses the plugin boundary: the vendor's metadata plus the versions the
/// export macro fills in, so a vendor cannot get them wrong.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginMetadata {
    #[serde(flatten)]
    pub connector: ConnectorMetadata,
    /// The plugin crate's own version.
    pub plugin_version: String,
    /// The plugin-api version the plugin was built against.
    pub plugin_api_version: String,
    /// Whether the connector reads delivery reports, and how it authenticates them (1.2;
    /// absent from older plugins and from connectors that take none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_reports: Option<crate::DeliveryReportSupport>,
}

impl ConnectorMetadata {
    /// Every problem with this metadata, in one line each; empty when it is usable.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.id.is_empty()
            || !self
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            problems.push(format!(
                "factory id {:?} must be non-empty ASCII letters, digits, '-', '_' or '.'",
                self.id
            ));
        }
        if self.target.is_empty() {
            problems.push("target is empty".to_owned());
        }
        if self
            .name
            .get("en")
            .is_none_or(|name| name.trim().is_empty())
        {
            problems.push("name has no `en` text".to_owned());
        }
        if self
            .description
            .get("en")
            .is_none_or(|text| text.trim().is_empty())
        {
            problems.push("description has no `en` text".to_owned());
        }
        if let Err(error) = serde_json::from_str::<serde_json::Value>(&self.config_template) {
            problems.push(format!("configTemplate is not valid JSON: {error}"));
        }
        let mut seen_keys = BTreeSet::new();
        for item in &self.form_items {
            if item.key.is_empty() {
                problems.push("a form item has an empty key".to_owned());
            } else if !seen_keys.insert(item.key.as_str()) {
                problems.push(format!("duplicate form item key {:?}", item.key));
            }
            let is_select = matches!(
                item.item_type,
                FormItemType::Select | FormItemType::MultiSelect
            );
            if is_select && item.select_items.as_ref().is_none_or(Vec::is_empty) {
                problems.push(format!(
                    "form item {:?} is a {:?} without selectItems",
                    item.key, item.item_type
                ));
            }
        }
        problems
    }

    /// Keys of the form items marked confidential: the values the host masks.
    pub fn confidential_keys(&self) -> impl Iterator<Item = &str> {
        self.form_items
            .iter()
            .filter(|item| item.is_confidential)
            .map(|item| item.key.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid_metadata() -> ConnectorMetadata {
        ConnectorMetadata {
            id: "example-sms".to_owned(),
            target: "example".to_owned(),
            name: english("Example"),
            description: english("An example connector."),
            readme: "# Example".to_owned(),
            logo: None,
            logo_dark: None,
            config_template: "{}".to_owned(),
            form_items: vec![FormItem::new("apiKey", "API key", FormItemType::Text)
                .required()
                .confidential()],
        }
    }

    #[test]
    fn valid_metadata_has_no_problems() {
        assert_eq!(valid_metadata().problems(), Vec::<String>::new());
    }

    #[test]
    fn each_defect_is_reported() {
        let mut metadata = valid_metadata();
        metadata.name = BTreeMap::from([("de".to_owned(), "Beispiel".to_owned())]);
        metadata
            .form_items
            .push(FormItem::new("apiKey", "Again", FormItemType::Text));
        metadata.config_template = "{not json".to_owned();
        let problems = metadata.problems();
        assert!(
            problems.iter().any(|p| p == "name has no `en` text"),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("duplicate form item key \"apiKey\"")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("configTemplate is not valid JSON")),
            "{problems:?}"
        );
    }

    #[test]
    fn unknown_form_item_type_does_not_parse() {
        let json = r#"{"key":"a","label":"A","type":"Slider"}"#;
        let error = serde_json::from_str::<FormItem>(json).unwrap_err();
        assert!(
            error.to_string().contains("unknown variant `Slider`"),
            "{error}"
        );
    }

    #[test]
    fn form_items_serialize_like_logto() {
        let item = FormItem::new("authToken", "Auth token", FormItemType::Text)
            .required()
            .confidential();
        let json = serde_json::to_value(item).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"key":"authToken","label":"Auth token","type":"Text","required":true,"isConfidential":true})
        );
    }
}
