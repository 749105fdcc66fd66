//! Webhook signatures: lowercase hex HMAC-SHA256, keyed by the endpoint's secret, over
//! `<X-Webhook-Timestamp>.<raw body>`.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use time::macros::format_description;
use time::OffsetDateTime;

/// The `X-Webhook-Timestamp` value for an attempt made at `at`: ISO 8601 UTC, whole seconds.
/// Digits are written by hand for years 0–9999, because the `time` crate's formatter cost as
/// much as the signature it goes into; other years go through the formatter.
pub fn timestamp(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    let Ok(year) = u16::try_from(at.year()) else {
        return formatted(at);
    };
    if year > 9999 {
        return formatted(at);
    }
    let mut text = *b"0000-00-00T00:00:00Z";
    let mut put = |at: usize, value: u16, digits: usize| {
        let mut value = value;
        for i in (at..at + digits).rev() {
            text[i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, year, 4);
    put(5, u8::from(at.month()).into(), 2);
    put(8, at.day().into(), 2);
    put(11, at.hour().into(), 2);
    put(14, at.minute().into(), 2);
    put(17, at.second().into(), 2);
    String::from_utf8(text.to_vec()).expect("digits and separators are ASCII")
}

fn formatted(at: OffsetDateTime) -> String {
    at.format(format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
    ))
    .expect("a UTC timestamp always formats")
}

/// An endpoint's signing key: keyed once per claim, copied for each signature.
#[derive(Clone)]
pub struct SigningKey(Hmac<Sha256>);

impl SigningKey {
    pub fn new(secret: &str) -> SigningKey {
        SigningKey(
            Hmac::<Sha256>::new_from_slice(secret.as_bytes())
                .expect("HMAC accepts keys of any length"),
        )
    }

    /// The `X-Webhook-Signature` value for `body` sent with `timestamp`.
    pub fn sign(&self, timestamp: &str, body: &[u8]) -> String {
        let mut mac = self.0.clone();
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        // Into a buffer at once: hex::encode collects the digits one char at a time.
        let mut digits = [0u8; 64];
        hex::encode_to_slice(mac.finalize().into_bytes(), &mut digits)
            .expect("32 bytes are 64 hex digits");
        String::from_utf8(digits.to_vec()).expect("hex digits are ASCII")
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_with_whole_seconds() {
        let at = time::macros::datetime!(2025-01-15 15:30:00.75 +01:00);
        assert_eq!(timestamp(at), "2025-01-15T14:30:00Z");
    }

    #[test]
    fn hand_written_timestamps_match_the_formatter() {
        // Every field at both ends of its range, across a few centuries and leap days.
        let mut at = time::macros::datetime!(1999-12-31 23:59:59 UTC);
        for _ in 0..100_000 {
            let at_utc = at.to_offset(time::UtcOffset::UTC);
            assert_eq!(timestamp(at), formatted(at_utc), "{at}");
            at += time::Duration::seconds(86_400 * 3 + 3_671);
        }
        let far = time::macros::datetime!(0001-01-01 00:00:00 UTC);
        assert_eq!(timestamp(far), "0001-01-01T00:00:00Z");
    }

    #[test]
    fn signature_matches_a_known_vector() {
        // Computed independently: printf '2025-01-15T14:30:00Z.{"a":1}' |
        //   openssl dgst -sha256 -hmac whsec_test -hex
        let key = SigningKey::new("whsec_test");
        assert_eq!(
            key.sign("2025-01-15T14:30:00Z", br#"{"a":1}"#),
            "13b10b431010ef40cddb5b30c8039721db76874673ab7a1d2be4525220c91cac"
        );
        // The key is not used up by signing.
        assert_eq!(
            key.sign("2025-01-15T14:30:00Z", br#"{"a":1}"#),
            "13b10b431010ef40cddb5b30c8039721db76874673ab7a1d2be4525220c91cac"
        );
    }
}
