//! The headers of one attempt: how they go on the wire (a `HeaderMap`), and how the attempt
//! log shows them (a JSON object, names as the seeds write them, in the order sent).

use bytes::{BufMut, BytesMut};
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, USER_AGENT};

/// The headers of one attempt: sent with its request and logged with it. Values are shared
/// with the claim where they can be (user agent, event type), so that building a request
/// copies little.
#[derive(Debug, Clone)]
pub struct SentHeaders {
    pub user_agent: HeaderValue,
    pub event_type: HeaderValue,
    pub event_id: HeaderValue,
    pub timestamp: HeaderValue,
    pub signature: HeaderValue,
}

impl SentHeaders {
    /// (name, value) in the order sent, names written as the seeds write them: that is how the
    /// attempt log shows them (HTTP header names are case-insensitive on the wire).
    pub fn named(&self) -> [(&'static str, &HeaderValue); 6] {
        static JSON: HeaderValue = HeaderValue::from_static("application/json");
        [
            ("Content-Type", &JSON),
            ("User-Agent", &self.user_agent),
            ("X-Webhook-Event", &self.event_type),
            ("X-Webhook-Id", &self.event_id),
            ("X-Webhook-Timestamp", &self.timestamp),
            ("X-Webhook-Signature", &self.signature),
        ]
    }

    pub fn header_map(&self) -> HeaderMap {
        const NAMES: [HeaderName; 6] = [
            CONTENT_TYPE,
            USER_AGENT,
            HeaderName::from_static("x-webhook-event"),
            HeaderName::from_static("x-webhook-id"),
            HeaderName::from_static("x-webhook-timestamp"),
            HeaderName::from_static("x-webhook-signature"),
        ];
        let mut map = HeaderMap::with_capacity(8);
        for (name, (_, value)) in NAMES.into_iter().zip(self.named()) {
            map.insert(name, value.clone());
        }
        map
    }

    /// The headers as the JSON object the attempt log stores, in the order sent:
    /// `{"Content-Type":"application/json","User-Agent":...}`. Written by hand rather than
    /// through serde: the values are plain visible ASCII but for a rare custom user agent,
    /// and serde's escaping, character by character, was a large share of the relay's
    /// instructions per delivery (docs/benchmarks-history.md, "Figures behind the code").
    pub fn write_json(&self, out: &mut BytesMut) {
        // A few hundred bytes: one allocation at most.
        out.reserve(384);
        for (i, (name, value)) in self.named().into_iter().enumerate() {
            // The names are ours: letters and dashes.
            out.put_slice(if i == 0 { b"{\"" } else { b",\"" });
            out.put_slice(name.as_bytes());
            out.put_slice(b"\":");
            write_json_string(out, value.as_bytes());
        }
        out.put_u8(b'}');
    }
}

/// `bytes` as a JSON string. Visible ASCII other than `"` and `\\` goes as it is; anything
/// else (escapes, and bytes that are not UTF-8, replaced as the log's text columns are) goes
/// through serde_json.
fn write_json_string(out: &mut BytesMut, bytes: &[u8]) {
    // Every byte checked, without stopping early, so that the loop compiles to vector code.
    let plain = bytes.iter().fold(true, |plain, &b| {
        plain & (b' '..=b'~').contains(&b) & (b != b'"') & (b != b'\\')
    });
    if plain {
        out.put_u8(b'"');
        out.put_slice(bytes);
        out.put_u8(b'"');
    } else {
        let text = String::from_utf8_lossy(bytes);
        let quoted = serde_json::to_string(&*text).expect("a string always serializes");
        out.put_slice(quoted.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(user_agent: &'static [u8]) -> SentHeaders {
        SentHeaders {
            user_agent: HeaderValue::from_bytes(user_agent).unwrap(),
            event_type: HeaderValue::from_static("offer.accepted"),
            event_id: HeaderValue::from(42),
            timestamp: HeaderValue::from_static("2026-11-30T12:00:00Z"),
            signature: HeaderValue::from_static("00ff"),
        }
    }

    fn json(headers: &SentHeaders) -> String {
        let mut out = BytesMut::new();
        headers.write_json(&mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn headers_are_logged_as_a_json_object_in_the_order_sent() {
        assert_eq!(
            json(&headers(b"Kit-Webhooks/1.0")),
            r#"{"Content-Type":"application/json","User-Agent":"Kit-Webhooks/1.0","X-Webhook-Event":"offer.accepted","X-Webhook-Id":"42","X-Webhook-Timestamp":"2026-11-30T12:00:00Z","X-Webhook-Signature":"00ff"}"#
        );
    }

    #[test]
    fn values_that_need_escaping_are_escaped_as_serde_json_would() {
        for agent in [
            &b"say \"hi\""[..],
            b"back\\slash",
            b"tab\there",
            b"caf\xc3\xa9",
            b"not utf-8 \xff",
        ] {
            let logged = json(&headers(agent));
            let parsed: serde_json::Value =
                serde_json::from_str(&logged).unwrap_or_else(|e| panic!("{logged}: {e}"));
            assert_eq!(
                parsed["User-Agent"],
                serde_json::Value::String(String::from_utf8_lossy(agent).into_owned()),
                "{logged}"
            );
        }
    }
}
