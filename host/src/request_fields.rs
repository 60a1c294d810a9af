//! Serde helpers for request-body fields whose rules serde's derive cannot state: each refuses
//! what the OpenAPI document says is not accepted, so the parser and the document agree and a
//! refusal is the usual `400 guard.invalid_input` naming the field.

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

/// A string that must not be empty (`minLength: 1`).
pub fn non_empty_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let text = String::deserialize(deserializer)?;
    if text.is_empty() {
        return Err(serde::de::Error::custom("must not be empty"));
    }
    Ok(text)
}

/// An optional JSON object that, when present, is an object: `null` is refused rather than
/// read as "absent", as Logto's guards refuse it (use with `#[serde(default)]`).
pub fn object_when_present<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Map<String, Value>>, D::Error> {
    Map::deserialize(deserializer).map(Some)
}

/// The six ASCII digits of a verification code, as the host issues them.
pub fn six_digit_code<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let code = String::deserialize(deserializer)?;
    if code.len() != 6 || !code.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(serde::de::Error::custom(
            "must be the six digits of the code that was sent",
        ));
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Fields {
        #[serde(default, deserialize_with = "non_empty_string")]
        name: String,
        #[serde(default, deserialize_with = "object_when_present")]
        config: Option<Map<String, Value>>,
        #[serde(default, deserialize_with = "six_digit_code")]
        code: String,
    }

    fn parse(json: &str) -> Result<Fields, String> {
        serde_json::from_str(json).map_err(|error| error.to_string())
    }

    #[test]
    fn each_rule_refuses_what_the_document_excludes() {
        assert!(parse(r#"{"name": ""}"#)
            .unwrap_err()
            .contains("must not be empty"));
        assert_eq!(parse(r#"{"name": "x"}"#).unwrap().name, "x");
        assert!(parse(r#"{"config": null}"#)
            .unwrap_err()
            .contains("invalid type: null"));
        assert!(parse(r#"{"config": []}"#).is_err());
        assert_eq!(parse("{}").unwrap().config, None);
        assert_eq!(parse(r#"{"config": {}}"#).unwrap().config, Some(Map::new()));
        for refused in ["12345", "1234567", "12345a", " 123456", "１２３４５６"] {
            let json = serde_json::json!({ "code": refused }).to_string();
            assert!(parse(&json).is_err(), "{refused:?}");
        }
        assert_eq!(parse(r#"{"code": "012345"}"#).unwrap().code, "012345");
    }
}
