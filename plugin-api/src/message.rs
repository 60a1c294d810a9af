//! What the host asks a connector to send.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The usage type of a message: picks the template (Logto's `TemplateType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
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

/// One SMS to send: Logto's `SendMessageData` for SMS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SmsMessage {
    /// The recipient in E.164 (`+` and digits); the host has validated it.
    pub to: String,
    #[serde(rename = "type")]
    pub template_type: TemplateType,
    /// `code`, optional `locale`, and anything else the caller passed; template
    /// placeholders refer to these keys.
    pub payload: serde_json::Map<String, serde_json::Value>,
}

impl SmsMessage {
    /// The verification code in the payload, if any.
    pub fn code(&self) -> Option<&str> {
        self.payload.get("code").and_then(|value| value.as_str())
    }

    /// The requested locale tag in the payload, if any.
    pub fn locale(&self) -> Option<&str> {
        self.payload.get("locale").and_then(|value| value.as_str())
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
        assert_eq!(message.template_type, TemplateType::SignIn);
        assert_eq!(message.code(), Some("123456"));
        assert_eq!(message.locale(), Some("de"));
    }
}
