//! Serde helpers for request-body fields whose rules serde's derive cannot state: each refuses
//! what the OpenAPI document says is not accepted, so the parser and the document agree and a
//! refusal is the usual `400 guard.invalid_input` naming the field.

use std::net::IpAddr;

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

/// An optional IP address (Logto's `ip`, the end user's address), parsed by std as IPv4
/// (`203.0.113.7`) or IPv6 (`2001:db8::7`); `null` is refused, as Logto's guard refuses it
/// (use with `#[serde(default)]`). An IPv4-mapped IPv6 address (`::ffff:203.0.113.7`, what a
/// dual-stack socket reports for an IPv4 client) is read as the IPv4 address, so one client
/// is one address whichever way its server listened. The value is not echoed: it is
/// personal data, and error answers may be logged.
pub fn ip_address_when_present<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<IpAddr>, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.parse::<IpAddr>()
        .map(|address| Some(address.to_canonical()))
        .map_err(|_| {
            serde::de::Error::custom(
                "must be an IPv4 or IPv6 address, such as 203.0.113.7 or 2001:db8::7",
            )
        })
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
        #[serde(default, deserialize_with = "ip_address_when_present")]
        ip: Option<IpAddr>,
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
        for refused in [
            "",
            "203.0.113",
            "203.0.113.256",
            "203.0.113.07",
            " 203.0.113.7",
            "2001:db8::g",
            "fe80::1%eth0",
            "[2001:db8::7]",
            "203.0.113.7:443",
            "example.com",
        ] {
            let json = serde_json::json!({ "ip": refused }).to_string();
            let error = parse(&json).unwrap_err();
            assert!(
                error.contains("must be an IPv4 or IPv6 address"),
                "{refused:?}: {error}"
            );
        }
        assert!(parse(r#"{"ip": null}"#).is_err());
        assert!(parse(r#"{"ip": 3405803783}"#).is_err());
        assert_eq!(parse("{}").unwrap().ip, None);
        for (accepted, read_as) in [
            ("203.0.113.7", "203.0.113.7"),
            ("2001:db8::7", "2001:db8::7"),
            ("2001:0db8:0000:0000:0000:0000:0000:0007", "2001:db8::7"),
            ("::ffff:203.0.113.7", "203.0.113.7"),
            ("::1", "::1"),
        ] {
            let json = serde_json::json!({ "ip": accepted }).to_string();
            assert_eq!(
                parse(&json).unwrap().ip,
                Some(read_as.parse().unwrap()),
                "{accepted:?}"
            );
        }
    }
}
