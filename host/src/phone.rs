//! Phone numbers: accepted as digits only (Logto's stored form, country code included) or
//! `+E.164`, validated with libphonenumber's metadata before any plugin sees them, and handed
//! to plugins in E.164. `--phone-validation digits` accepts what Logto accepts instead (digits
//! only, no numbering-plan check), for clients written against Logto.
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

/// How strictly phone numbers are checked (`--phone-validation`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum PhoneValidation {
    /// Digits with the country code or `+E.164`, valid for its country code according to
    /// libphonenumber's numbering plans: a mistyped number is refused before it costs an SMS.
    #[default]
    Strict,
    /// What Logto accepts (`^\d+$`; here also with a leading `+`), up to the 32 digits Logto's
    /// store holds, without a numbering-plan check. Plugins still get `+` and the digits.
    Digits,
}

/// The most digits `digits` accepts: Logto keeps phones in a `varchar(32)`.
pub const MAX_DIGITS_LOGTO_STORES: usize = 32;

impl PhoneValidation {
    /// The number a client sent, checked in this mode.
    pub fn parse(self, input: &str) -> Result<PhoneNumber, String> {
        match self {
            PhoneValidation::Strict => PhoneNumber::parse(input),
            PhoneValidation::Digits => PhoneNumber::parse_digits(input),
        }
    }

    /// What the OpenAPI document says a phone number looks like in this mode (the
    /// `PhoneNumber` schema): a pattern clients and fuzzers can check, and the rest in words.
    pub fn document_schema(self) -> utoipa::openapi::schema::Schema {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        let (pattern, description) = match self {
            PhoneValidation::Strict => (
                r"^\+?[1-9][0-9]{5,14}$",
                "A phone number: digits with the country code (`12015550123`) or E.164 \
                 (`+12015550123`), that libphonenumber's numbering plans hold valid for its \
                 country code; anything else is refused with `400 guard.invalid_phone_number`. \
                 Plugins receive it in E.164.",
            ),
            PhoneValidation::Digits => (
                r"^\+?[0-9]{1,32}$",
                "A phone number as Logto accepts it: digits (`8612345678901`), here also with a \
                 leading `+`, without a numbering-plan check (`--phone-validation digits`); \
                 anything else is refused with `400 guard.invalid_phone_number`. Plugins \
                 receive `+` and the digits.",
            ),
        };
        utoipa::openapi::schema::Schema::Object(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(pattern))
                .description(Some(description))
                .examples(["+12015550123", "12015550123"])
                .build(),
        )
    }
}

impl utoipa::PartialSchema for PhoneNumber {
    /// The default mode's; the served document swaps in the running host's.
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        PhoneValidation::default().document_schema().into()
    }
}

impl utoipa::ToSchema for PhoneNumber {}

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
            .parse(format!("+{digits}"), None)
            .map_err(|error| format!("{input:?} is not a phone number: {error}"))?;
        // What `is_valid_number` does, with the region found once: finding it walks every
        // region of a shared country code (+1 has 25), and the region is wanted anyway.
        let region = PHONE_NUMBER_UTIL
            .get_region_for_number(&number)
            .filter(|region| PHONE_NUMBER_UTIL.is_valid_number_for_region(&number, *region))
            .ok_or_else(|| format!("{input:?} is not a valid phone number for its country code"))?;
        Ok(Self {
            e164: PHONE_NUMBER_UTIL
                .format(&number, PhoneNumberFormat::E164)
                .into_owned(),
            region: Some(region.as_region_str().to_string()),
        })
    }

    /// Digits only, with an optional leading `+`, as Logto takes them: no numbering-plan check,
    /// so the region is known only when libphonenumber recognizes the number.
    pub fn parse_digits(input: &str) -> Result<Self, String> {
        let digits = input.strip_prefix('+').unwrap_or(input);
        if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
            return Err(format!(
                "{input:?} is not a phone number: use digits with the country code (12015550123)"
            ));
        }
        if digits.len() > MAX_DIGITS_LOGTO_STORES {
            return Err(format!(
                "{input:?} is longer than {MAX_DIGITS_LOGTO_STORES} digits"
            ));
        }
        let e164 = format!("+{digits}");
        let region = PHONE_NUMBER_UTIL
            .parse(&e164, None)
            .ok()
            .filter(|number| PHONE_NUMBER_UTIL.is_valid_number(number))
            .and_then(|number| PHONE_NUMBER_UTIL.get_region_for_number(&number))
            .map(|region| region.as_region_str().to_string());
        Ok(Self { e164, region })
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
    fn digits_mode_takes_what_logto_takes_and_hands_plugins_a_plus() {
        for (input, e164) in [
            ("8612345678901", "+8612345678901"),
            // Not a valid North American number, but Logto's `^\d+$` takes it.
            ("1233212321", "+1233212321"),
            ("+12015550123", "+12015550123"),
        ] {
            let phone = PhoneValidation::Digits
                .parse(input)
                .unwrap_or_else(|error| panic!("{error}"));
            assert_eq!(phone.e164(), e164, "{input}");
            assert!(PhoneValidation::Strict.parse("1233212321").is_err());
        }
        assert_eq!(
            PhoneValidation::Digits
                .parse("12015550123")
                .unwrap()
                .region(),
            Some("US")
        );
        assert_eq!(
            PhoneValidation::Digits
                .parse("1233212321")
                .unwrap()
                .region(),
            None
        );
        for refused in ["", "+", "12 34", "-1", "1".repeat(33).as_str(), "++1"] {
            assert!(
                PhoneValidation::Digits.parse(refused).is_err(),
                "{refused:?}"
            );
        }
    }

    #[test]
    fn each_mode_documents_its_pattern_and_examples_it_accepts() {
        for (mode, expected_pattern) in [
            (PhoneValidation::Strict, r"^\+?[1-9][0-9]{5,14}$"),
            (PhoneValidation::Digits, r"^\+?[0-9]{1,32}$"),
        ] {
            let schema = serde_json::to_value(mode.document_schema()).unwrap();
            assert_eq!(schema["pattern"], expected_pattern);
            for example in schema["examples"].as_array().unwrap() {
                let example = example.as_str().unwrap();
                assert!(mode.parse(example).is_ok(), "{mode:?} refuses {example}");
            }
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
