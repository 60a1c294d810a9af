//! Verification codes: six digits from the OS CSPRNG, stored only as a keyed hash.
//!
//! The hash is HMAC-SHA256 under a key kept in the data directory (mode 0600), over phone,
//! usage type and code: a copy of the database alone does not let anyone test the million
//! possible codes offline. The store compares hashes in constant time.

use std::time::Duration;

use hmac::{Hmac, Mac};
use plugin_api::TemplateType;
use serde::Serialize;
use sha2::Sha256;
use zeroize::Zeroizing;

/// How long a code lives and how many wrong attempts it takes; reported in `GET /health`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CodePolicy {
    #[serde(
        serialize_with = "crate::durations::as_seconds",
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

/// Hashes codes under the host's code-hash keys: the first key issues, every key verifies
/// (so a key rotation never refuses a code issued before it).
///
/// The key file holds one key per line (`#` comments and blank lines skipped); a file of one
/// line, as every host before rotations wrote it, is one key. Never printed: `Debug` shows
/// fingerprints only.
pub struct CodeHasher {
    /// Never empty; the first issues.
    keys: Vec<Zeroizing<Vec<u8>>>,
}

impl std::fmt::Debug for CodeHasher {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("CodeHasher")
            .field("fingerprints", &self.fingerprints())
            .finish()
    }
}

/// The shortest key a key file may hold, as for every shared key file.
const MIN_KEY_CHARS: usize = 32;

/// What a fingerprint is the HMAC of: a fixed label, so the database can name a key without
/// holding anything that helps to guess a code.
const FINGERPRINT_LABEL: &[u8] = b"connector-host code-hash key fingerprint v1";

/// What is wrong with a code-hash key file's text; one line, never quoting a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeHashKeysParseError {
    #[error("line {line} is too short for a key (at least {MIN_KEY_CHARS} characters, e.g. `openssl rand -hex 32`)")]
    TooShort { line: usize },
    #[error("line {line} repeats a key")]
    RepeatedKey { line: usize },
    #[error("it holds no key")]
    NoKey,
}

impl CodeHasher {
    /// One key (tests, and the text of a one-key file).
    pub fn new(key: &[u8]) -> Self {
        Self {
            keys: vec![Zeroizing::new(key.to_vec())],
        }
    }

    /// The keys of a key file's text. Errors are one line and never quote a key.
    pub fn parse(text: &str) -> Result<Self, CodeHashKeysParseError> {
        let mut keys: Vec<Zeroizing<Vec<u8>>> = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line.len() < MIN_KEY_CHARS {
                return Err(CodeHashKeysParseError::TooShort { line: index + 1 });
            }
            if keys.iter().any(|key| key.as_slice() == line.as_bytes()) {
                return Err(CodeHashKeysParseError::RepeatedKey { line: index + 1 });
            }
            keys.push(Zeroizing::new(line.as_bytes().to_vec()));
        }
        if keys.is_empty() {
            return Err(CodeHashKeysParseError::NoKey);
        }
        Ok(Self { keys })
    }

    /// The file text for these keys, in this order.
    pub fn file_text(&self) -> Zeroizing<String> {
        let mut text = Zeroizing::new(String::from(
            "# connector-host code-hash keys: the first key issues codes, every key verifies them.\n\
             # Same file on every host of one database; rotate with `connector-host rotate-code-hash-key`.\n",
        ));
        for key in &self.keys {
            text.push_str(&String::from_utf8_lossy(key));
            text.push('\n');
        }
        text
    }

    /// A new random key (64 hex digits) behind the current ones: it verifies, it does not
    /// issue yet.
    pub fn with_new_key_behind(&self) -> std::io::Result<Self> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        getrandom::fill(bytes.as_mut_slice())
            .map_err(|error| std::io::Error::other(error.to_string()))?;
        let mut keys = self.keys.clone();
        keys.push(Zeroizing::new(hex::encode(bytes.as_slice()).into_bytes()));
        Ok(Self { keys })
    }

    /// The same keys with the one fingerprinted `fingerprint` in front (it issues).
    pub fn with_issuing(&self, fingerprint: &str) -> Option<Self> {
        let position = self
            .fingerprints()
            .iter()
            .position(|held| held == fingerprint)?;
        let mut keys = self.keys.clone();
        let key = keys.remove(position);
        keys.insert(0, key);
        Some(Self { keys })
    }

    /// Only the keys whose fingerprints are in `kept`.
    pub fn keeping(&self, kept: &[String]) -> Self {
        let keys = self
            .keys
            .iter()
            .filter(|key| kept.contains(&fingerprint(key)))
            .cloned()
            .collect();
        Self { keys }
    }

    /// The fingerprint of each key, the issuing key's first: 16 hex digits of
    /// HMAC-SHA256(key, a fixed label). Safe to record: it reveals nothing of the key.
    pub fn fingerprints(&self) -> Vec<String> {
        self.keys.iter().map(|key| fingerprint(key)).collect()
    }

    /// The hash a new code is stored as (the issuing key).
    pub fn hash(&self, phone: &str, template_type: TemplateType, code: &str) -> Vec<u8> {
        hash_under(&self.keys[0], phone, template_type, code)
    }

    /// The hashes a presented code may be stored as, one per key.
    pub fn hashes(&self, phone: &str, template_type: TemplateType, code: &str) -> Vec<Vec<u8>> {
        self.keys
            .iter()
            .map(|key| hash_under(key, phone, template_type, code))
            .collect()
    }
}

fn fingerprint(key: &[u8]) -> String {
    // A key of any length is accepted by HMAC; the fallback is unreachable.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(FINGERPRINT_LABEL);
    hex::encode(&mac.finalize().into_bytes()[..8])
}

/// The usage type enters the hash as its name (`SignIn`), as it always has: codes saved before
/// keep verifying.
fn hash_under(key: &[u8], phone: &str, template_type: TemplateType, code: &str) -> Vec<u8> {
    // A key of any length is accepted by HMAC; the fallback is unreachable.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return Vec::new();
    };
    for part in [phone, template_type.as_str(), code] {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part.as_bytes());
    }
    mac.finalize().into_bytes().to_vec()
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
        let base = hasher.hash("+12015550123", TemplateType::SignIn, "123456");
        assert_eq!(base.len(), 32);
        assert_eq!(
            base,
            hasher.hash("+12015550123", TemplateType::SignIn, "123456")
        );
        assert_ne!(
            base,
            hasher.hash("+12015550124", TemplateType::SignIn, "123456")
        );
        assert_ne!(
            base,
            hasher.hash("+12015550123", TemplateType::Register, "123456")
        );
        assert_ne!(
            base,
            hasher.hash("+12015550123", TemplateType::SignIn, "123457")
        );
        assert_ne!(
            base,
            CodeHasher::new(b"other").hash("+12015550123", TemplateType::SignIn, "123456")
        );
    }

    /// The bytes of a hash are fixed: codes saved by earlier builds (the type hashed as its
    /// name) must verify after an upgrade.
    #[test]
    fn a_hash_is_the_same_bytes_as_before_the_type_was_typed() {
        let hasher = CodeHasher::new(b"a-shared-test-key-of-at-least-32-characters");
        assert_eq!(
            hex::encode(hasher.hash("+12015550123", TemplateType::SignIn, "123456")),
            "290de859d16b7cc446498700dcea1add3d7db2111eb1028591cf6e08a34371c6"
        );
    }

    #[test]
    fn the_first_key_issues_every_key_verifies_and_fingerprints_name_keys() {
        let one = CodeHasher::parse("a-shared-test-key-of-at-least-32-characters\n").unwrap();
        // A one-line file is the key it always was.
        assert_eq!(
            one.hash("+12015550123", TemplateType::SignIn, "123456"),
            CodeHasher::new(b"a-shared-test-key-of-at-least-32-characters").hash(
                "+12015550123",
                TemplateType::SignIn,
                "123456"
            )
        );
        let staged = one.with_new_key_behind().unwrap();
        assert_eq!(staged.fingerprints()[0], one.fingerprints()[0]);
        assert_eq!(
            staged.hash("+1", TemplateType::SignIn, "1"),
            one.hash("+1", TemplateType::SignIn, "1")
        );
        let new_fingerprint = staged.fingerprints()[1].clone();
        let promoted = staged.with_issuing(&new_fingerprint).unwrap();
        assert_eq!(promoted.fingerprints()[0], new_fingerprint);
        // A code issued before the promotion still verifies after it.
        let issued_before = one.hash("+1", TemplateType::SignIn, "1");
        assert!(promoted
            .hashes("+1", TemplateType::SignIn, "1")
            .contains(&issued_before));
        let finished = promoted.keeping(std::slice::from_ref(&new_fingerprint));
        assert_eq!(finished.fingerprints(), vec![new_fingerprint]);
        // The file round-trips, and nothing in a fingerprint or Debug is the key.
        let reread = CodeHasher::parse(&promoted.file_text()).unwrap();
        assert_eq!(reread.fingerprints(), promoted.fingerprints());
        assert_eq!(one.fingerprints()[0].len(), 16);
        assert!(!format!("{one:?}").contains("a-shared-test-key"));
        assert_ne!(CodeHasher::new(b"other").fingerprints(), one.fingerprints());
        assert!(CodeHasher::parse("# nothing\n")
            .unwrap_err()
            .to_string()
            .contains("no key"));
        let key = "k".repeat(32);
        assert!(CodeHasher::parse(&format!("{key}\n{key}\n"))
            .unwrap_err()
            .to_string()
            .contains("line 2 repeats"));
        assert!(CodeHasher::parse(&format!("{key}\nshort\n"))
            .unwrap_err()
            .to_string()
            .contains("line 2 is too short"));
    }
}
