//! Phone numbers: accepted as digits only (Logto's stored form, country code included) or
//! `+E.164`, validated with libphonenumber's metadata before any plugin sees them, and handed
//! to plugins in E.164.
//!
//! Validation uses `rlibphonenumber` (a port of Google's libphonenumber, fuzzed against the C++
//! original): it sits on every send, and the `phonenumber` crate took ~11 µs a number behind
//! one process-wide regex-cache mutex (a quarter of the host's CPU under load); this takes ~2 µs.

use rlibphonenumber::{PhoneNumberFormat, PHONE_NUMBER_UTIL};

/// A validated phone number in E.164 (`+12015550123`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneNumber {
    e164: String,
    region: Option<String>,
}

/// Loads the numbering plans (~5 ms), so the first send after start-up does not pay for it.
pub fn load_numbering_plans() {
    std::sync::LazyLock::force(&PHONE_NUMBER_UTIL);
}

impl PhoneNumber {
    pub fn parse(input: &str) -> Result<Self, String> {
        let digits = input.strip_prefix('+').unwrap_or(input);
        if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
            return Err(format!(
                "{input:?} is not a phone number: use digits with the country code (12015550123) or E.164 (+12015550123)"
            ));
        }
        if digits.len() > 15 {
            return Err(format!(
                "{input:?} is longer than the 15 digits E.164 allows"
            ));
        }
        let number = PHONE_NUMBER_UTIL
            .parse(&format!("+{digits}"), None)
            .map_err(|error| format!("{input:?} is not a phone number: {error}"))?;
        if !PHONE_NUMBER_UTIL.is_valid_number(&number) {
            return Err(format!(
                "{input:?} is not a valid phone number for its country code"
            ));
        }
        Ok(Self {
            e164: PHONE_NUMBER_UTIL
                .format(&number, PhoneNumberFormat::E164)
                .into_owned(),
            region: PHONE_NUMBER_UTIL
                .get_region_for_number(&number)
                .map(|region| region.as_region_str().to_string()),
        })
    }

    pub fn e164(&self) -> &str {
        &self.e164
    }

    /// The ISO 3166 region of the number, such as `US`, when it is known.
    pub fn region(&self) -> Option<&str> {
        self.region.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_and_e164_normalize_to_e164() {
        assert_eq!(
            PhoneNumber::parse("12015550123").unwrap().e164(),
            "+12015550123"
        );
        assert_eq!(
            PhoneNumber::parse("+12015550123").unwrap().e164(),
            "+12015550123"
        );
        assert_eq!(
            PhoneNumber::parse("+4915112345678").unwrap().region(),
            Some("DE")
        );
    }

    #[test]
    fn numbers_of_other_countries_keep_their_digits_and_region() {
        for (input, e164, region) in [
            ("+447400123456", "+447400123456", "GB"),
            ("33612345678", "+33612345678", "FR"),
            // Italian landlines keep their leading zero in E.164.
            ("+390612345678", "+390612345678", "IT"),
            ("+819012345678", "+819012345678", "JP"),
            ("+5511961234567", "+5511961234567", "BR"),
        ] {
            let phone = PhoneNumber::parse(input).unwrap_or_else(|error| panic!("{error}"));
            assert_eq!(phone.e164(), e164, "{input}");
            assert_eq!(phone.region(), Some(region), "{input}");
        }
    }

    #[test]
    fn invalid_numbers_are_refused_with_a_reason() {
        assert!(PhoneNumber::parse("").is_err());
        assert!(PhoneNumber::parse("+1 201 555 0123")
            .unwrap_err()
            .contains("not a phone number"));
        assert!(PhoneNumber::parse("15555550123")
            .unwrap_err()
            .contains("not a valid phone number"));
        assert!(PhoneNumber::parse("1234567890123456")
            .unwrap_err()
            .contains("15 digits"));
    }
}
