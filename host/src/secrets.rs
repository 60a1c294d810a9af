//! Masking of secrets in connector configs.
//!
//! A config value is secret when its form item is marked `isConfidential`, or, as Logto's
//! console does, when its key ends in `Key`, `Secret`, `Token` or `Password` (at any depth).
//! Responses carry [`MASK`] instead of the value. A client that sends a config back with
//! [`MASK`] in place means "unchanged": [`restore_masked`] puts the stored value back, and a
//! mask with nothing stored behind it is refused, so the placeholder is never saved as a secret.

use std::collections::BTreeSet;

use serde_json::Value;

/// What a secret looks like in a response.
pub const MASK: &str = "******";

const SECRET_KEY_SUFFIXES: [&str; 4] = ["key", "secret", "token", "password"];

/// Which config keys hold secrets for one factory.
#[derive(Debug, Clone, Default)]
pub struct SecretKeys {
    confidential_form_keys: BTreeSet<String>,
}

impl SecretKeys {
    pub fn new<'a>(confidential_form_keys: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            confidential_form_keys: confidential_form_keys
                .into_iter()
                .map(str::to_owned)
                .collect(),
        }
    }

    fn is_secret(&self, key: &str, depth: usize) -> bool {
        let lowercase = key.to_ascii_lowercase();
        (depth == 0 && self.confidential_form_keys.contains(key))
            || SECRET_KEY_SUFFIXES
                .iter()
                .any(|suffix| lowercase.ends_with(suffix))
    }

    /// Every secret value in `config` (the values [`SecretKeys::mask`] hides) as text: strings
    /// as they are, numbers as written, and every leaf under a secret key that holds an
    /// object or an array.
    pub fn secret_values(&self, config: &Value) -> Vec<String> {
        let mut values = Vec::new();
        self.collect_secret_values(config, 0, &mut values);
        values
    }

    fn collect_secret_values(&self, value: &Value, depth: usize, values: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    if self.is_secret(key, depth) {
                        collect_leaves(child, values);
                    } else {
                        self.collect_secret_values(child, depth + 1, values);
                    }
                }
            }
            Value::Array(items) => {
                for item in items {
                    self.collect_secret_values(item, depth + 1, values);
                }
            }
            _ => {}
        }
    }

    /// A copy of `config` with every secret value (that is not null or empty) replaced by [`MASK`].
    pub fn mask(&self, config: &Value) -> Value {
        self.mask_at(config, 0)
    }

    fn mask_at(&self, value: &Value, depth: usize) -> Value {
        match value {
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(key, value)| {
                        let masked = if self.is_secret(key, depth) && !is_blank(value) {
                            Value::String(MASK.to_owned())
                        } else {
                            self.mask_at(value, depth + 1)
                        };
                        (key.clone(), masked)
                    })
                    .collect(),
            ),
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|item| self.mask_at(item, depth + 1))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

fn collect_leaves(value: &Value, leaves: &mut Vec<String>) {
    match value {
        Value::String(text) if !text.is_empty() => leaves.push(text.clone()),
        Value::Number(number) => leaves.push(number.to_string()),
        Value::Object(map) => map.values().for_each(|child| collect_leaves(child, leaves)),
        Value::Array(items) => items.iter().for_each(|item| collect_leaves(item, leaves)),
        _ => {}
    }
}

fn is_blank(value: &Value) -> bool {
    matches!(value, Value::Null) || value.as_str().is_some_and(str::is_empty)
}

/// Replaces every [`MASK`] in `submitted` by the value at the same path in `stored`. Errors
/// with the path of a mask that has no stored value behind it.
pub fn restore_masked(submitted: &Value, stored: Option<&Value>) -> Result<Value, String> {
    restore_at(submitted, stored, "")
}

fn restore_at(submitted: &Value, stored: Option<&Value>, path: &str) -> Result<Value, String> {
    match submitted {
        Value::String(text) if text == MASK => match stored {
            Some(stored_value)
                if !is_blank(stored_value) && stored_value.as_str() != Some(MASK) =>
            {
                Ok(stored_value.clone())
            }
            _ => Err(if path.is_empty() {
                ".".to_owned()
            } else {
                path.to_owned()
            }),
        },
        Value::Object(map) => map
            .iter()
            .map(|(key, value)| {
                let child_path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                let stored_child = stored.and_then(|stored| stored.get(key));
                Ok((key.clone(), restore_at(value, stored_child, &child_path)?))
            })
            .collect::<Result<serde_json::Map<_, _>, _>>()
            .map(Value::Object),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(index, item)| {
                let stored_item = stored.and_then(|stored| stored.get(index));
                restore_at(item, stored_item, &format!("{path}[{index}]"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        other => Ok(other.clone()),
    }
}

/// The paths of every [`MASK`] in a config, as `a.b[0]`.
pub fn masked_paths(value: &Value) -> Vec<String> {
    let mut paths = Vec::new();
    collect_paths(
        value,
        "",
        &mut |value| value.as_str() == Some(MASK),
        &mut paths,
    );
    paths
}

fn child_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn collect_paths(
    value: &Value,
    path: &str,
    wanted: &mut impl FnMut(&Value) -> bool,
    paths: &mut Vec<String>,
) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                collect_paths(child, &child_path(path, key), wanted, paths);
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                collect_paths(item, &format!("{path}[{index}]"), wanted, paths);
            }
        }
        leaf if wanted(leaf) => paths.push(if path.is_empty() {
            ".".to_owned()
        } else {
            path.to_owned()
        }),
        _ => {}
    }
}

/// A value that is a URL (`scheme://...`), not text that mentions one (a template with a link).
fn looks_like_url(value: &Value) -> bool {
    value.as_str().is_some_and(|text| {
        let text = text.trim_start();
        text.split_once("://").is_some_and(|(scheme, _)| {
            !scheme.is_empty()
                && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        })
    })
}

fn value_at<'a>(config: &'a Value, path: &str) -> Option<&'a Value> {
    let mut current = config;
    for segment in path.split('.') {
        let (key, indexes) = match segment.find('[') {
            Some(at) => (&segment[..at], &segment[at..]),
            None => (segment, ""),
        };
        if !key.is_empty() {
            current = current.get(key)?;
        }
        for index in indexes.split(['[', ']']).filter(|part| !part.is_empty()) {
            current = current.get(index.parse::<usize>().ok()?)?;
        }
    }
    Some(current)
}

/// The destinations (values that are URLs, in either config) that differ between a submitted
/// config and the saved one. A saved secret may only travel to the destinations it was saved
/// with: otherwise a caller holding an admin key could point the endpoint at a host of theirs
/// and have the host send the vendor credential there.
pub fn changed_destinations(submitted: &Value, stored: &Value) -> Vec<String> {
    let mut paths = Vec::new();
    collect_paths(submitted, "", &mut looks_like_url, &mut paths);
    collect_paths(stored, "", &mut looks_like_url, &mut paths);
    paths.sort();
    paths.dedup();
    paths.retain(|path| value_at(submitted, path) != value_at(stored, path));
    paths
}

/// Whether a config still holds a [`MASK`] anywhere.
pub fn contains_mask(value: &Value) -> bool {
    match value {
        Value::String(text) => text == MASK,
        Value::Object(map) => map.values().any(contains_mask),
        Value::Array(items) => items.iter().any(contains_mask),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn destinations_that_changed_are_found_at_any_depth() {
        let stored = json!({"endpoint": "https://sms.example.com/send", "authorization": "x", "nested": {"callbacks": ["https://a.example"]}});
        let same = json!({"endpoint": "https://sms.example.com/send", "authorization": MASK, "nested": {"callbacks": ["https://a.example"]}});
        assert_eq!(changed_destinations(&same, &stored), Vec::<String>::new());
        let moved = json!({"endpoint": "https://attacker.example/collect", "authorization": MASK, "nested": {"callbacks": ["https://b.example"]}});
        assert_eq!(
            changed_destinations(&moved, &stored),
            vec!["endpoint".to_owned(), "nested.callbacks[0]".to_owned()]
        );
        let dropped = json!({"authorization": MASK});
        assert_eq!(changed_destinations(&dropped, &stored).len(), 2);
        assert_eq!(masked_paths(&moved), vec!["authorization".to_owned()]);
        // Text that mentions a URL is not a destination.
        let template = json!({"content": "Code {{code}}, or open https://example.com/verify"});
        let edited = json!({"content": "Your code {{code}}, or open https://example.com/verify"});
        assert_eq!(
            changed_destinations(&edited, &template),
            Vec::<String>::new()
        );
    }

    #[test]
    fn masks_confidential_form_keys_and_secret_looking_keys() {
        let keys = SecretKeys::new(["authorization"]);
        let config = json!({
            "authorization": "Bearer abc", "apiKey": "k", "nested": {"clientSecret": "s", "note": "n"},
            "accountSID": "AC1", "emptyToken": "", "templates": [{"usageType": "Generic", "content": "{{code}}"}]
        });
        let masked = keys.mask(&config);
        assert_eq!(masked["authorization"], MASK);
        assert_eq!(masked["apiKey"], MASK);
        assert_eq!(masked["nested"]["clientSecret"], MASK);
        assert_eq!(masked["nested"]["note"], "n");
        assert_eq!(masked["accountSID"], "AC1");
        assert_eq!(masked["emptyToken"], "");
        assert_eq!(masked["templates"], config["templates"]);
        let mut values = keys.secret_values(&config);
        values.sort();
        assert_eq!(values, ["Bearer abc", "k", "s"]);
    }

    #[test]
    fn a_masked_round_trip_keeps_the_stored_secret() {
        let stored = json!({"apiKey": "real", "nested": {"authToken": "t"}, "from": "Acme"});
        let submitted = json!({"apiKey": MASK, "nested": {"authToken": MASK}, "from": "NewName"});
        let restored = restore_masked(&submitted, Some(&stored)).unwrap();
        assert_eq!(
            restored,
            json!({"apiKey": "real", "nested": {"authToken": "t"}, "from": "NewName"})
        );
    }

    #[test]
    fn a_mask_without_a_stored_value_is_refused() {
        let stored = json!({"apiKey": ""});
        assert_eq!(
            restore_masked(&json!({"apiKey": MASK}), Some(&stored)).unwrap_err(),
            "apiKey"
        );
        assert_eq!(
            restore_masked(&json!({"list": [MASK]}), None).unwrap_err(),
            "list[0]"
        );
        assert!(contains_mask(&json!({"a": {"b": [MASK]}})));
        assert!(!contains_mask(&json!({"a": "x"})));
    }
}
