//! Templates every connector needs: pick the one for a usage type (falling back to Generic,
//! optionally per locale) and render its `{{placeholders}}` with Logto's semantics.

use serde::{Deserialize, Serialize};

use crate::{ConnectorError, Payload, SmsMessage, TemplateType};

/// One message template of a connector config: `{usageType, content, locale?}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SmsTemplate {
    pub usage_type: TemplateType,
    pub content: String,
    /// A BCP 47 tag such as `de` or `pt-BR`; a template without one serves every locale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
}

/// Picks the template for `usage_type` and `locale`, falling back to `Generic`.
///
/// Within one usage type the best match wins: the exact locale tag, then a template for the
/// language alone (`pt` for `pt-BR`), then the template without a locale. When the usage type
/// has no match, the same search runs on `Generic`; when that has none either, the error is
/// `template_not_found`.
pub fn find_template<'a>(
    templates: &'a [SmsTemplate],
    usage_type: TemplateType,
    locale: Option<&str>,
) -> Result<&'a SmsTemplate, ConnectorError> {
    let search_order = [usage_type, TemplateType::Generic];
    search_order
        .iter()
        .find_map(|&candidate_type| best_locale_match(templates, candidate_type, locale))
        .ok_or_else(|| {
            let fallback = if usage_type == TemplateType::Generic {
                ""
            } else {
                " and none for Generic"
            };
            ConnectorError::template_not_found(format!(
                "no template for usage type {usage_type}{fallback}{}",
                locale
                    .map(|tag| format!(" (locale {tag})"))
                    .unwrap_or_default()
            ))
        })
}

/// [`find_template`] for a message: its type and its `payload.locale`.
pub fn find_template_for<'a>(
    templates: &'a [SmsTemplate],
    message: &SmsMessage,
) -> Result<&'a SmsTemplate, ConnectorError> {
    find_template(templates, message.template_type(), message.locale())
}

fn best_locale_match<'a>(
    templates: &'a [SmsTemplate],
    usage_type: TemplateType,
    locale: Option<&str>,
) -> Option<&'a SmsTemplate> {
    let of_type = || {
        templates
            .iter()
            .filter(move |template| template.usage_type == usage_type)
    };
    if let Some(requested) = locale.filter(|tag| !tag.is_empty()) {
        let language = requested.split(['-', '_']).next().unwrap_or(requested);
        let exact = of_type().find(|template| {
            template
                .locale
                .as_deref()
                .is_some_and(|tag| normalized_tag(tag) == normalized_tag(requested))
        });
        let language_only = || {
            of_type().find(|template| {
                template
                    .locale
                    .as_deref()
                    .is_some_and(|tag| tag.eq_ignore_ascii_case(language))
            })
        };
        if let Some(found) = exact.or_else(language_only) {
            return Some(found);
        }
    }
    of_type().find(|template| template.locale.is_none())
}

fn normalized_tag(tag: &str) -> String {
    tag.replace('_', "-").to_ascii_lowercase()
}

/// Renders `{{ key }}` and `{{ key.nested.path }}` placeholders from the message payload,
/// as Logto's `replaceSendMessageHandlebars` does:
/// - a placeholder whose root key is not in the payload is left as it is;
/// - a nested path that does not exist renders as the empty string;
/// - strings render as themselves, other JSON values as their JSON text, `null` as empty.
pub fn render_template(content: &str, payload: &Payload) -> String {
    let mut rendered = String::with_capacity(content.len() + 16);
    let mut rest = content;
    while let Some(open) = rest.find("{{") {
        rendered.push_str(&rest[..open]);
        let after_open = &rest[open + 2..];
        let Some(close) = after_open.find("}}") else {
            rendered.push_str(&rest[open..]);
            return rendered;
        };
        let placeholder = &rest[open..open + 2 + close + 2];
        let key = after_open[..close].trim();
        match placeholder_value(key, payload) {
            Some(value) => rendered.push_str(&value),
            None => rendered.push_str(placeholder),
        }
        rest = &after_open[close + 2..];
    }
    rendered.push_str(rest);
    rendered
}

/// `None` means "leave the placeholder as written".
fn placeholder_value(key: &str, payload: &Payload) -> Option<String> {
    let is_path = !key.is_empty()
        && key
            .split('.')
            .all(|part| !part.is_empty() && part.chars().all(|c| c.is_alphanumeric() || c == '_'));
    if !is_path {
        return None;
    }
    let mut parts = key.split('.');
    let root_key = parts.next()?;
    if !key.contains('.') {
        // The common case, `{{code}}`: a string value renders without parsing anything.
        if let Some(text) = payload.get_str(root_key) {
            return Some(text.to_owned());
        }
    }
    let root = payload.get(root_key)?;
    let value = parts.try_fold(&root, |value, part| match value {
        serde_json::Value::Object(map) => map.get(part),
        serde_json::Value::Array(items) => part.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    });
    Some(match value {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn template(usage_type: TemplateType, locale: Option<&str>, content: &str) -> SmsTemplate {
        SmsTemplate {
            usage_type,
            content: content.to_owned(),
            locale: locale.map(str::to_owned),
        }
    }

    fn payload(value: serde_json::Value) -> Payload {
        Payload::from(value.as_object().cloned().unwrap())
    }

    #[test]
    fn exact_usage_type_wins_over_generic() {
        let templates = [
            template(TemplateType::Generic, None, "generic"),
            template(TemplateType::SignIn, None, "sign in"),
        ];
        assert_eq!(
            find_template(&templates, TemplateType::SignIn, None)
                .unwrap()
                .content,
            "sign in"
        );
        assert_eq!(
            find_template(&templates, TemplateType::Register, None)
                .unwrap()
                .content,
            "generic"
        );
    }

    #[test]
    fn neither_type_nor_generic_is_template_not_found() {
        let templates = [template(TemplateType::SignIn, None, "sign in")];
        let error = find_template(&templates, TemplateType::Register, None).unwrap_err();
        assert_eq!(error.code, crate::ConnectorErrorCode::TemplateNotFound);
    }

    #[test]
    fn locale_prefers_exact_tag_then_language_then_untagged() {
        let templates = [
            template(TemplateType::SignIn, None, "untagged"),
            template(TemplateType::SignIn, Some("pt"), "portuguese"),
            template(TemplateType::SignIn, Some("pt-BR"), "brazilian"),
        ];
        let pick = |locale| {
            find_template(&templates, TemplateType::SignIn, locale)
                .unwrap()
                .content
                .clone()
        };
        assert_eq!(pick(Some("pt-BR")), "brazilian");
        assert_eq!(pick(Some("pt_br")), "brazilian");
        assert_eq!(pick(Some("pt-PT")), "portuguese");
        assert_eq!(pick(Some("de")), "untagged");
        assert_eq!(pick(None), "untagged");
    }

    #[test]
    fn locale_only_templates_of_a_type_fall_back_to_generic_for_other_locales() {
        let templates = [
            template(TemplateType::SignIn, Some("de"), "deutsch"),
            template(TemplateType::Generic, None, "generic"),
        ];
        let pick = |locale| {
            find_template(&templates, TemplateType::SignIn, locale)
                .unwrap()
                .content
                .clone()
        };
        assert_eq!(pick(Some("de-AT")), "deutsch");
        assert_eq!(pick(Some("fr")), "generic");
    }

    #[test]
    fn renders_code_and_nested_paths_like_logto() {
        let data = payload(
            json!({"code": "123456", "organization": {"name": "Acme", "seats": 3}, "nothing": null}),
        );
        assert_eq!(
            render_template("Code {{code}}, again {{ code }}.", &data),
            "Code 123456, again 123456."
        );
        assert_eq!(
            render_template(
                "Join {{organization.name}} ({{ organization.seats }})",
                &data
            ),
            "Join Acme (3)"
        );
        assert_eq!(render_template("[{{organization.missing}}]", &data), "[]");
        assert_eq!(render_template("[{{nothing}}]", &data), "[]");
        assert_eq!(
            render_template("keep {{unknown}} and {{unknown.path}}", &data),
            "keep {{unknown}} and {{unknown.path}}"
        );
        assert_eq!(
            render_template("odd {{ not a key }} {{", &data),
            "odd {{ not a key }} {{"
        );
        assert_eq!(render_template("no placeholders", &data), "no placeholders");
        assert_eq!(render_template("{{code}}{{code}}", &data), "123456123456");
    }
}
