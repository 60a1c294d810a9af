//! Verification codes: six digits from the OS CSPRNG.

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
}
