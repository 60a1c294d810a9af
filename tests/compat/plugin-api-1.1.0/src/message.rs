//! What the host asks a connector to send.

use std::fmt;
use std::str::FromStr;

use abi_stable::std_types::{RString, RVec};
use abi_stable::StableAbi;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The usage type of a message: picks the template (Logto's `TemplateType`).
///
/// It crosses the plugin boundary as a `u8`: a new variant changes the ABI, so it comes with a
/// new minor plugin-api version, which the host checks before anything else.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum TemplateType {
    Register,
    SignIn,
    ForgotPassword,
    Generic,
    OrganizationInvitation,
    UserPermissionValidation,
    BindNewIdentifier,
    MfaVerification,
    BindMfa,
}

impl TemplateType {
    pub const ALL: [TemplateType; 9] = [
        Self::Register,
        Self::SignIn,
        Self::ForgotPassword,
        Self::Generic,
        Self::OrganizationInvitation,
        Self::UserPermissionValidation,
        Self::BindNewIdentifier,
        Self::MfaVerification,
        Self::BindMfa,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Register => "Register",
            Self::SignIn => "SignIn",
            Self::ForgotPassword => "ForgotPassword",
            Self::Generic => "Generic",
            Self::OrganizationInvitation => "OrganizationInvitation",
            Self::UserPermissionValidation => "UserPermissionValidation",
            Self::BindNewIdentifier => "BindNewIdentifier",
            Self::MfaVerification => "MfaVerification",
            Self::BindMfa => "BindMfa",
        }
    }
}

/// The error for a usage type this build does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownTemplateType(pub String);

impl fmt::Display for UnknownTemplateType {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let known: Vec<&str> = TemplateType::ALL.iter().map(|t| t.as_str()).collect();
        write!(
            formatter,
            "unknown usage type {:?}, expected one of {}",
            self.0,
            known.join(", ")
        )
    }
}

impl std::error::Error for UnknownTemplateType {}

impl FromStr for TemplateType {
    type Err = UnknownTemplateType;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|known| known.as_str() == text)
            .ok_or_else(|| UnknownTemplateType(text.to_owned()))
    }
}

impl fmt::Display for TemplateType {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl Serialize for TemplateType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for TemplateType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// What the host asks a connector to send: the recipient in E.164, the usage type, and
/// Logto's payload (`code`, `locale`, anything else the caller passed).
///
/// Laid out for the plugin boundary (`#[repr(C)]`, its layout checked when a plugin loads):
/// a plugin reads the host's message where it is, with no copy and no parsing per call. That
/// is why it has accessors instead of public fields.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct SmsMessage {
    to: RString,
    template_type: TemplateType,
    payload: Payload,
}

impl SmsMessage {
    /// The payload is a JSON object, as a `serde_json::Value` (`json!({"code": "123456"})`)
    /// or a `serde_json::Map`.
    pub fn new(
        to: impl Into<String>,
        template_type: TemplateType,
        payload: impl Into<Payload>,
    ) -> Self {
        Self {
            to: RString::from(to.into()),
            template_type,
            payload: payload.into(),
        }
    }

    /// The recipient, in E.164 (`+12015550123`).
    pub fn to(&self) -> &str {
        self.to.as_str()
    }

    pub fn template_type(&self) -> TemplateType {
        self.template_type
    }

    pub fn payload(&self) -> &Payload {
        &self.payload
    }

    /// `payload.code`, when it is a string.
    pub fn code(&self) -> Option<&str> {
        self.payload.get_str("code")
    }

    /// `payload.locale`, when it is a string.
    pub fn locale(&self) -> Option<&str> {
        self.payload.get_str("locale")
    }
}

/// The message payload: a JSON object. String values are kept as they are and read without
/// parsing ([`Payload::get_str`]); other values are kept as JSON text and parsed when asked
/// for ([`Payload::get`]).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Default)]
pub struct Payload {
    entries: RVec<PayloadEntry>,
}

#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
struct PayloadEntry {
    key: RString,
    /// The string itself for a string value, the JSON text of any other value.
    value: RString,
    value_is_string: bool,
}

impl Payload {
    fn entry(&self, key: &str) -> Option<&PayloadEntry> {
        self.entries.iter().find(|entry| entry.key.as_str() == key)
    }

    /// The value of `key` when it is a JSON string.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.entry(key)
            .filter(|entry| entry.value_is_string)
            .map(|entry| entry.value.as_str())
    }

    /// The value of `key`, whatever its JSON type.
    pub fn get(&self, key: &str) -> Option<serde_json::Value> {
        self.entry(key).map(PayloadEntry::to_value)
    }

    /// The whole payload as a JSON object, to forward it as it is.
    pub fn to_json_map(&self) -> serde_json::Map<String, serde_json::Value> {
        self.entries
            .iter()
            .map(|entry| (entry.key.to_string(), entry.to_value()))
            .collect()
    }
}

impl PayloadEntry {
    fn to_value(&self) -> serde_json::Value {
        if self.value_is_string {
            return serde_json::Value::String(self.value.to_string());
        }
        // Written from a `serde_json::Value` by `Payload::from`; never anything else.
        serde_json::from_str(&self.value).unwrap_or(serde_json::Value::Null)
    }
}

impl From<serde_json::Map<String, serde_json::Value>> for Payload {
    fn from(map: serde_json::Map<String, serde_json::Value>) -> Self {
        let entries = map
            .into_iter()
            .map(|(key, value)| {
                let (value, value_is_string) = match value {
                    serde_json::Value::String(text) => (text, true),
                    other => (other.to_string(), false),
                };
                PayloadEntry {
                    key: key.into(),
                    value: value.into(),
                    value_is_string,
                }
            })
            .collect();
        Self { entries }
    }
}

/// A JSON object's entries, for tests and tools:
/// `SmsMessage::new("+12015550123", TemplateType::SignIn, json!({"code": "123456"}))`.
/// Logto's payload is always an object; any other value gives an empty payload.
impl From<serde_json::Value> for Payload {
    fn from(value: serde_json::Value) -> Self {
        match value {
            serde_json::Value::Object(map) => Payload::from(map),
            _ => Payload::default(),
        }
    }
}

impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json_map().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde_json::Map::deserialize(deserializer).map(Payload::from)
    }
}

/// Logto's field names: `{"to": ..., "type": ..., "payload": {...}}`.
#[derive(Serialize, Deserialize)]
struct SmsMessageFields<Text, PayloadField> {
    to: Text,
    #[serde(rename = "type")]
    template_type: TemplateType,
    payload: PayloadField,
}

impl Serialize for SmsMessage {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        SmsMessageFields {
            to: self.to(),
            template_type: self.template_type,
            payload: &self.payload,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SmsMessage {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let fields = SmsMessageFields::<String, Payload>::deserialize(deserializer)?;
        Ok(SmsMessage::new(
            fields.to,
            fields.template_type,
            fields.payload,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_types_round_trip_and_unknown_is_an_error() {
        for template_type in TemplateType::ALL {
            assert_eq!(
                template_type.as_str().parse::<TemplateType>(),
                Ok(template_type)
            );
        }
        let error = "Login".parse::<TemplateType>().unwrap_err();
        assert!(error
            .to_string()
            .starts_with("unknown usage type \"Login\""));
    }

    #[test]
    fn message_uses_logto_field_names() {
        let message: SmsMessage = serde_json::from_value(serde_json::json!({
            "to": "+12015550123", "type": "SignIn", "payload": {"code": "123456", "locale": "de"}
        }))
        .unwrap();
        assert_eq!(message.template_type(), TemplateType::SignIn);
        assert_eq!(message.code(), Some("123456"));
        assert_eq!(message.locale(), Some("de"));
    }

    #[test]
    fn the_payload_keeps_strings_as_they_are_and_other_values_as_json() {
        let original = serde_json::json!({
            "code": "123456", "attempt": 2, "user": {"name": "Ada"}, "empty": null, "quote": "a \"b\""
        });
        let payload = Payload::from(original.as_object().cloned().unwrap());
        assert_eq!(payload.get_str("code"), Some("123456"));
        assert_eq!(payload.get_str("quote"), Some("a \"b\""));
        assert_eq!(payload.get_str("attempt"), None, "not a string");
        assert_eq!(payload.get("attempt"), Some(serde_json::json!(2)));
        assert_eq!(
            payload.get("user"),
            Some(serde_json::json!({"name": "Ada"}))
        );
        assert_eq!(payload.get("empty"), Some(serde_json::Value::Null));
        assert_eq!(payload.get("missing"), None);
        assert_eq!(serde_json::Value::Object(payload.to_json_map()), original);
        let message = SmsMessage::new("+12015550123", TemplateType::Register, payload);
        assert_eq!(
            serde_json::to_value(&message).unwrap(),
            serde_json::json!({"to": "+12015550123", "type": "Register", "payload": original})
        );
    }

    #[test]
    fn a_message_is_built_from_a_json_payload() {
        let message = SmsMessage::new(
            "+12015550123",
            TemplateType::SignIn,
            serde_json::json!({"code": "123456", "attempt": 2}),
        );
        assert_eq!(message.code(), Some("123456"));
        assert_eq!(message.payload().get("attempt"), Some(serde_json::json!(2)));
        let not_an_object = Payload::from(serde_json::json!("123456"));
        assert_eq!(not_an_object, Payload::default());
    }
}
