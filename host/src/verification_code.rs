//! Verification codes: six digits from the OS CSPRNG, stored only as a keyed hash.
//!
//! The hash is HMAC-SHA256 under a key kept in the data directory (mode 0600), over phone,
//! usage type and code: a copy of the database alone does not let anyone test the million
//! possible codes offline. The store compares hashes in constant time.

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

/// How long a code lives and how many wrong attempts it takes; reported in `GET /health`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CodePolicy {
    #[serde(
        serialize_with = "crate::send::as_seconds",
        rename = "timeToLiveSeconds"
    )]
    pub time_to_live: Duration,
    pub max_attempts: u32,
}

impl Default for CodePolicy {
    fn default() -> Self {
        Self {
            time_to_live: Duration::from_secs(600),
            max_attempts: 10,
        }
    }
}

/// A uniformly random six-digit code. Rejection sampling keeps every code equally likely.
pub fn generate_code() -> std::io::Result<String> {
    const CODES: u32 = 1_000_000;
    // The largest multiple of CODES that fits in a u32: values at or above it would bias the low codes.
    const LIMIT: u32 = u32::MAX - (u32::MAX % CODES);
    loop {
        let mut bytes = [0u8; 4];
        getrandom::fill(&mut bytes).map_err(|error| std::io::Error::other(error.to_string()))?;
        let value = u32::from_le_bytes(bytes);
        if value < LIMIT {
            return Ok(format!("{:06}", value % CODES));
        }
    }
}

/// The message that carries a code: `payload.code`, and `payload.locale` to pick a
/// per-locale template.
pub fn code_message(
    phone: &crate::phone::PhoneNumber,
    template_type: plugin_api::TemplateType,
    code: String,
    locale: Option<String>,
) -> plugin_api::SmsMessage {
    let mut payload = serde_json::Map::new();
    payload.insert("code".to_owned(), serde_json::Value::String(code));
    if let Some(locale) = locale {
        payload.insert("locale".to_owned(), serde_json::Value::String(locale));
    }
    plugin_api::SmsMessage::new(phone.e164(), template_type, payload)
}

/// Hashes codes under the host's secret key.
pub struct CodeHasher {
    key: Vec<u8>,
}

impl CodeHasher {
    pub fn new(key: &[u8]) -> Self {
        Self { key: key.to_vec() }
    }

    pub fn hash(&self, phone: &str, template_type: &str, code: &str) -> Vec<u8> {
        // A key of any length is accepted by HMAC; the fallback is unreachable.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            return Vec::new();
        };
        for part in [phone, template_type, code] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        mac.finalize().into_bytes().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_six_digits_and_vary() {
        let codes: std::collections::BTreeSet<String> =
            (0..50).map(|_| generate_code().unwrap()).collect();
        assert!(codes
            .iter()
            .all(|code| code.len() == 6 && code.chars().all(|c| c.is_ascii_digit())));
        assert!(
            codes.len() > 40,
            "50 random codes should rarely collide: {codes:?}"
        );
    }

    #[test]
    fn hashes_depend_on_key_phone_type_and_code() {
        let hasher = CodeHasher::new(b"key");
        let base = hasher.hash("+12015550123", "SignIn", "123456");
        assert_eq!(base.len(), 32);
        assert_eq!(base, hasher.hash("+12015550123", "SignIn", "123456"));
        assert_ne!(base, hasher.hash("+12015550124", "SignIn", "123456"));
        assert_ne!(base, hasher.hash("+12015550123", "Register", "123456"));
        assert_ne!(base, hasher.hash("+12015550123", "SignIn", "123457"));
        assert_ne!(
            base,
            CodeHasher::new(b"other").hash("+12015550123", "SignIn", "123456")
        );
    }
}
