//! The signature-verification snippets in docs/relay.md, run as written (Python and Node)
//! against real deliveries: they accept what the relay sends and reject tampering, a wrong
//! secret and a replayed (old) timestamp.

use e2e::receiver::Recorded;
use e2e::stage::Stage;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The code block of `language` in docs/relay.md.
fn snippet(language: &str) -> String {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/relay.md"))
        .expect("docs/relay.md");
    let fence = format!("```{language}\n");
    let start = doc.find(&fence).expect("a fenced block") + fence.len();
    let end = start + doc[start..].find("```").expect("a closing fence");
    doc[start..end].to_string()
}

/// Reads one JSON case per line on stdin and prints true/false per case.
const PYTHON_DRIVER: &str = r#"
import json, sys
for line in sys.stdin:
    c = json.loads(line)
    print("true" if verify_webhook(c["secret"], c["timestamp"], c["signature"], bytes.fromhex(c["body_hex"])) else "false")
"#;

const NODE_DRIVER: &str = r#"
const lines = require("fs").readFileSync(0, "utf8").split("\n").filter(Boolean);
for (const line of lines) {
  const c = JSON.parse(line);
  console.log(verifyWebhook(c.secret, c.timestamp, c.signature, Buffer.from(c.body_hex, "hex")) ? "true" : "false");
}
"#;

struct Case {
    secret: String,
    timestamp: String,
    signature: String,
    body: Vec<u8>,
}

fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// A real delivery as received, and three forgeries made from it. Expected: true, then false×3.
fn cases(secret: &str, request: &Recorded) -> Vec<Case> {
    let timestamp = request.header("x-webhook-timestamp").unwrap().to_string();
    let signature = request.header("x-webhook-signature").unwrap().to_string();
    let body = request.body.to_vec();
    let mut tampered = body.clone();
    tampered.extend_from_slice(b" ");
    let old = "2020-01-01T00:00:00Z".to_string();
    vec![
        Case {
            secret: secret.into(),
            timestamp: timestamp.clone(),
            signature: signature.clone(),
            body: body.clone(),
        },
        Case {
            secret: secret.into(),
            timestamp: timestamp.clone(),
            signature: signature.clone(),
            body: tampered,
        },
        Case {
            secret: "whsec_not_the_right_one".into(),
            timestamp,
            signature,
            body: body.clone(),
        },
        Case {
            secret: secret.into(),
            signature: sign(secret, &old, &body),
            timestamp: old,
            body,
        },
    ]
}

fn run(program: &str, args: &[&str], code: String, cases: &[Case]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("verify");
    std::fs::write(&path, code).unwrap();
    let mut child = Command::new(program)
        .args(args)
        .arg(&path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {program}: {e}"));
    let mut input = String::new();
    for c in cases {
        let line = json!({"secret": c.secret, "timestamp": c.timestamp, "signature": c.signature,
                          "body_hex": hex::encode(&c.body)});
        input.push_str(&format!("{line}\n"));
    }
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{program}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn the_documented_python_and_node_snippets_verify_real_deliveries() {
    let stage = Stage::new().await.unwrap();
    let (endpoint, secret) = stage.endpoint("/verify", &["offer.*"], "").await.unwrap();
    let _relay = stage.relay(&[]).await.unwrap();
    // Non-ASCII text, so that a receiver hashing re-encoded text instead of raw bytes fails.
    stage
        .emit(
            "offer.revised",
            json!({"id": 15, "details": "Senior Engineer — $150k base, café"}),
        )
        .await
        .unwrap();
    stage
        .db
        .execute("SELECT webhooks.send_test_ping($1)", &[&endpoint])
        .await
        .unwrap();
    let requests = stage.receiver.wait_for(2, Duration::from_secs(20)).await;

    let all: Vec<Case> = requests.iter().flat_map(|r| cases(&secret, r)).collect();
    let expected: Vec<&str> = requests
        .iter()
        .flat_map(|_| ["true", "false", "false", "false"])
        .collect();
    let python = snippet("python") + PYTHON_DRIVER;
    assert_eq!(run("python3", &[], python, &all), expected, "python");
    let node = snippet("javascript") + NODE_DRIVER;
    assert_eq!(run("node", &[], node, &all), expected, "node");
}
