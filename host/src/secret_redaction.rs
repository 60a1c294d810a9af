//! Redaction of a connector's configured secrets from what leaves the process.
//!
//! A provider that answers an error may echo the credential it was sent (a 401 page quoting
//! the API key, a Basic `Authorization` header repeated back); a connector that puts the
//! provider's answer into its error then hands the secret to the host, which would pass it to
//! the client (a send-key client included) and to the log. [`SecretRedactor`] replaces every
//! configured secret value, and the encodings it travels in, by [`MASK`] in connector errors
//! (message and data), receipts and the log line of a send.
//!
//! Built once per connector instance (the live connector, or the unsaved config of a `/test`),
//! never per send. What counts as a secret is what [`SecretKeys`] masks in responses.
//!
//! Encodings covered: the value itself; URL/form encodings (`%20` and `+`, upper- and
//! lower-case hex); JSON string escaping; base64 (standard and URL-safe) of the value; and any
//! base64 token in the text whose decoded bytes hold the value, which covers Basic auth's
//! `base64(user:password)` whatever the user is.
//!
//! Values shorter than [`MIN_REDACTED_CHARS`] are not redacted: replacing every `abc` in a
//! message would mangle ordinary words and still reveal the value by where the masks fall;
//! a credential that short is guessable anyway.

use std::borrow::Cow;

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine;
use plugin_api::{ConnectorError, SendReceipt};
use serde_json::Value;

use crate::secrets::{SecretKeys, MASK};

/// Secret values shorter than this (in characters) are left as they are.
pub const MIN_REDACTED_CHARS: usize = 4;

/// Shortest run of base64 characters worth decoding (a 4-character secret is 8 characters
/// of base64 once a `user:` precedes it; alone it is 6).
const MIN_BASE64_TOKEN: usize = 6;

/// Decoders that take a token cut anywhere: padding optional, stray trailing bits allowed.
const LENIENT: base64::engine::GeneralPurposeConfig = base64::engine::GeneralPurposeConfig::new()
    .with_decode_allow_trailing_bits(true)
    .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent);
const LENIENT_STANDARD: base64::engine::GeneralPurpose =
    base64::engine::GeneralPurpose::new(&base64::alphabet::STANDARD, LENIENT);
const LENIENT_URL_SAFE: base64::engine::GeneralPurpose =
    base64::engine::GeneralPurpose::new(&base64::alphabet::URL_SAFE, LENIENT);

/// The secrets of one connector instance and the encodings they may appear in.
#[derive(Debug, Default)]
pub struct SecretRedactor {
    /// Every literal form of every secret, found in one pass (leftmost-longest).
    literals: Option<AhoCorasick>,
    /// The raw values, looked for inside decoded base64 tokens.
    raw_values: Vec<Vec<u8>>,
}

impl SecretRedactor {
    /// The redactor for a config, with the secrets its factory's keys mark.
    pub fn for_config(secret_keys: &SecretKeys, config: &Value) -> Self {
        Self::for_values(secret_keys.secret_values(config))
    }

    /// The redactor for these secret values (those under [`MIN_REDACTED_CHARS`] skipped).
    pub fn for_values(values: impl IntoIterator<Item = String>) -> Self {
        let mut raw_values: Vec<String> = values
            .into_iter()
            .filter(|value| value.chars().count() >= MIN_REDACTED_CHARS && value != MASK)
            .collect();
        raw_values.sort();
        raw_values.dedup();
        let mut literals: Vec<String> = raw_values
            .iter()
            .flat_map(|value| encodings(value))
            .collect();
        literals.sort();
        literals.dedup();
        let literals = if literals.is_empty() {
            None
        } else {
            AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(&literals)
                .ok()
        };
        Self {
            literals,
            raw_values: raw_values.into_iter().map(String::into_bytes).collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.raw_values.is_empty()
    }

    /// `text` with every secret (in any covered encoding) replaced by [`MASK`].
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if self.is_empty() {
            return Cow::Borrowed(text);
        }
        let replaced = match &self.literals {
            Some(literals) if literals.is_match(text) => {
                Cow::Owned(literals.replace_all(text, &vec![MASK; literals.patterns_len()]))
            }
            _ => Cow::Borrowed(text),
        };
        match self.redact_base64_tokens(&replaced) {
            Some(redacted) => Cow::Owned(redacted),
            None => replaced,
        }
    }

    /// Replaces each run of base64 characters whose decoding holds a secret; `None` when
    /// there is none.
    fn redact_base64_tokens(&self, text: &str) -> Option<String> {
        let mut output: Option<String> = None;
        let mut copied_up_to = 0;
        for (start, end) in base64_runs(text) {
            if !self.decodes_to_a_secret(&text[start..end]) {
                continue;
            }
            let output = output.get_or_insert_with(|| String::with_capacity(text.len()));
            output.push_str(&text[copied_up_to..start]);
            output.push_str(MASK);
            copied_up_to = end;
        }
        output.map(|mut output| {
            output.push_str(&text[copied_up_to..]);
            output
        })
    }

    fn decodes_to_a_secret(&self, token: &str) -> bool {
        let token = token.trim_end_matches('=');
        // A token may start mid-way through an encoding: try each of the three alignments.
        (0..3).any(|skip| {
            let Some(aligned) = token.get(skip..) else {
                return false;
            };
            [&LENIENT_STANDARD, &LENIENT_URL_SAFE]
                .iter()
                .filter_map(|engine| {
                    // A trailing partial character decodes to nothing useful: drop it.
                    let usable = aligned.len() - aligned.len() % 4 + usable_tail(aligned.len() % 4);
                    engine.decode(&aligned[..usable]).ok()
                })
                .any(|decoded| {
                    self.raw_values
                        .iter()
                        .any(|secret| contains_bytes(&decoded, secret))
                })
        })
    }

    /// A connector error with its message and data redacted.
    pub fn redact_error(&self, mut error: ConnectorError) -> ConnectorError {
        if self.is_empty() {
            return error;
        }
        if let Cow::Owned(message) = self.redact(&error.message) {
            error.message = message;
        }
        if let Some(data) = error.data.as_mut() {
            self.redact_json(data);
        }
        error
    }

    /// Every string (and object key) in a JSON value, redacted in place.
    pub fn redact_json(&self, value: &mut Value) {
        match value {
            Value::String(text) => {
                if let Cow::Owned(redacted) = self.redact(text) {
                    *text = redacted;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|item| self.redact_json(item)),
            Value::Object(map) => {
                let entries = std::mem::take(map);
                for (key, mut child) in entries {
                    self.redact_json(&mut child);
                    map.insert(self.redact(&key).into_owned(), child);
                }
            }
            Value::Number(_) | Value::Bool(_) | Value::Null => {}
        }
    }

    /// A receipt whose provider message id holds no secret.
    pub fn redact_receipt(&self, receipt: SendReceipt) -> SendReceipt {
        match receipt.provider_message_id().map(|id| self.redact(id)) {
            Some(Cow::Owned(redacted)) => SendReceipt::with_provider_message_id(redacted),
            _ => receipt,
        }
    }
}

/// Characters of a final partial base64 quantum that still carry whole bytes.
fn usable_tail(remainder: usize) -> usize {
    match remainder {
        2 | 3 => remainder,
        _ => 0,
    }
}

/// The literal forms a value may travel in.
fn encodings(value: &str) -> Vec<String> {
    use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
    // RFC 3986 unreserved characters stay as they are (reqwest's and most clients' choice).
    const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    let mut forms = vec![
        value.to_owned(),
        form_urlencoded::byte_serialize(value.as_bytes()).collect::<String>(),
        utf8_percent_encode(value, NON_ALPHANUMERIC).to_string(),
        utf8_percent_encode(value, COMPONENT).to_string(),
        // Padded first: leftmost-longest then takes the `=` along.
        base64::engine::general_purpose::STANDARD.encode(value),
        base64::engine::general_purpose::URL_SAFE.encode(value),
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(value),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value),
    ];
    if let Ok(json) = serde_json::to_string(value) {
        forms.push(json[1..json.len() - 1].to_owned());
    }
    // Percent encodings with lower-case hex digits too.
    let lower_hex: Vec<String> = forms
        .iter()
        .filter(|form| form.contains('%'))
        .map(|form| lowercase_percent_escapes(form))
        .collect();
    forms.extend(lower_hex);
    forms.retain(|form| form.chars().count() >= MIN_REDACTED_CHARS);
    forms
}

fn lowercase_percent_escapes(text: &str) -> String {
    let mut output = String::with_capacity(text.len());
    let mut hex_left = 0;
    for character in text.chars() {
        if character == '%' {
            hex_left = 2;
            output.push(character);
        } else if hex_left > 0 {
            hex_left -= 1;
            output.push(character.to_ascii_lowercase());
        } else {
            output.push(character);
        }
    }
    output
}

/// Byte ranges of the runs of base64 characters (either alphabet, `=` padding at the end).
fn base64_runs(text: &str) -> Vec<(usize, usize)> {
    let is_base64 =
        |byte: u8| byte.is_ascii_alphanumeric() || matches!(byte, b'+' | b'/' | b'-' | b'_');
    let bytes = text.as_bytes();
    let mut runs = Vec::new();
    let mut index = 0;
    while index < bytes.len() {
        if !is_base64(bytes[index]) {
            index += 1;
            continue;
        }
        let start = index;
        while index < bytes.len() && is_base64(bytes[index]) {
            index += 1;
        }
        while index < bytes.len() && bytes[index] == b'=' {
            index += 1;
        }
        if index - start >= MIN_BASE64_TOKEN {
            runs.push((start, index));
        }
    }
    runs
}

fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && haystack.len() >= needle.len()
        && haystack
            .windows(needle.len())
            .any(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KEY: &str = "sk_live a/b+c=d&é";

    fn redactor() -> SecretRedactor {
        let keys = SecretKeys::new(["authorization"]);
        SecretRedactor::for_config(
            &keys,
            &json!({"authorization": "Bearer-xyz-123", "apiKey": KEY, "from": "Acme", "pin": "abc",
                    "templates": [{"usageType": "Generic", "content": "Your code {{code}}"}]}),
        )
    }

    #[test]
    fn the_value_and_its_encodings_are_masked() {
        let redactor = redactor();
        let encoded = [
            KEY.to_owned(),
            form_urlencoded::byte_serialize(KEY.as_bytes()).collect(),
            percent_encoding::utf8_percent_encode(KEY, percent_encoding::NON_ALPHANUMERIC)
                .to_string(),
            lowercase_percent_escapes(
                &percent_encoding::utf8_percent_encode(KEY, percent_encoding::NON_ALPHANUMERIC)
                    .to_string(),
            ),
            base64::engine::general_purpose::STANDARD.encode(KEY),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(KEY),
            base64::engine::general_purpose::STANDARD.encode(format!("AC123:{KEY}")),
            base64::engine::general_purpose::STANDARD.encode(format!("someone-else:{KEY}")),
            serde_json::to_string(KEY).unwrap(),
        ];
        for form in encoded {
            let text = format!("401 Unauthorized: the key <{form}> is wrong (Basic realm)");
            let redacted = redactor.redact(&text);
            assert!(
                !redacted.contains(form.trim_matches('"')),
                "{form} survives in {redacted}"
            );
            assert!(!redacted.contains("*="), "padding left behind: {redacted}");
            assert!(redacted.contains(MASK), "{redacted}");
            assert!(
                redacted.starts_with("401 Unauthorized: the key <"),
                "{redacted}"
            );
            assert!(redacted.ends_with("is wrong (Basic realm)"), "{redacted}");
        }
        assert_eq!(redactor.redact("Bearer-xyz-123"), MASK);
    }

    #[test]
    fn text_without_secrets_is_left_alone() {
        let redactor = redactor();
        let text = "the provider answered 500 (code 20003): Authenticate abc from Acme, ref Q29kZSBpcyBvaw";
        assert!(matches!(redactor.redact(text), Cow::Borrowed(_)));
        // Short values ("abc") and non-secret keys ("from") are not redacted.
        assert_eq!(redactor.redact(text), text);
        assert!(SecretRedactor::default().redact(KEY) == KEY);
    }

    #[test]
    fn errors_data_and_receipts_are_redacted() {
        let redactor = redactor();
        let error = ConnectorError::general(format!("answered 401: {KEY}"))
            .with_data(json!({"body": {"echo": [KEY]}, KEY: 1}));
        let error = redactor.redact_error(error);
        assert_eq!(error.message, format!("answered 401: {MASK}"));
        assert_eq!(error.data, Some(json!({"body": {"echo": [MASK]}, MASK: 1})));
        let receipt =
            redactor.redact_receipt(SendReceipt::with_provider_message_id(format!("id-{KEY}")));
        assert_eq!(
            receipt.provider_message_id(),
            Some(format!("id-{MASK}").as_str())
        );
    }
}
