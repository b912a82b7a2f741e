//! The read-only outputs a connection carries once its endpoint exists (`interfaceEndpointId`,
//! `interfaceEndpointName`, `providerAccountId`), shaped like each cloud's own identifiers.
//!
//! They are derived from the connection's id, so every read of one connection shows the same values
//! and a test can predict nothing about them except their shape.

use super::state::SplitMix;
use serde_json::{Map, Value};

/// FNV-1a: a fixed, dependency-free hash, so the same id gives the same outputs in every run.
fn seed_of(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn hex(rng: &mut SplitMix, digits: usize) -> String {
    let mut out = String::with_capacity(digits + 16);
    while out.len() < digits {
        out.push_str(&format!("{:016x}", rng.next_u64()));
    }
    out.truncate(digits);
    out
}

fn guid(rng: &mut SplitMix) -> String {
    let h = hex(rng, 32);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Adds the outputs for a connection of `provider` (upper case) with this `_id`. AWS and GCP get a
/// `vpce-` endpoint id; only Azure names its private endpoint, so only Azure gets
/// `interfaceEndpointName`. The account is a 12-digit AWS account, an Azure subscription id, or a
/// GCP project id.
pub(crate) fn add(view: &mut Map<String, Value>, provider: &str, id: &str) {
    let mut rng = SplitMix::new(seed_of(id));
    let (endpoint, name, account) = match provider {
        "AWS" => (
            format!("vpce-{}", hex(&mut rng, 17)),
            None,
            format!("{:012}", rng.next_u64() % 1_000_000_000_000),
        ),
        "GCP" => {
            let endpoint = format!("vpce-{}", hex(&mut rng, 17));
            // A GCP project id: a letter first, then lower-case letters and digits, 6 to 30 long.
            const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
            let tail: String = (0..20)
                .map(|_| {
                    let i = (rng.next_u64() % ALPHABET.len() as u64) as usize;
                    char::from(ALPHABET[i])
                })
                .collect();
            (endpoint, None, format!("p-{tail}"))
        }
        "AZURE" => {
            let subscription = guid(&mut rng);
            let name = format!("pe-atlas-streams-{}", hex(&mut rng, 12));
            let endpoint = format!(
                "/subscriptions/{subscription}/resourceGroups/rg_{id}_{}/providers/Microsoft.Network/privateEndpoints/{name}",
                hex(&mut rng, 8)
            );
            (endpoint, Some(name), subscription)
        }
        _ => return,
    };
    view.insert("interfaceEndpointId".into(), Value::String(endpoint));
    if let Some(name) = name {
        view.insert("interfaceEndpointName".into(), Value::String(name));
    }
    view.insert("providerAccountId".into(), Value::String(account));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outputs(provider: &str, id: &str) -> Map<String, Value> {
        let mut view = Map::new();
        add(&mut view, provider, id);
        view
    }

    fn text<'a>(view: &'a Map<String, Value>, key: &str) -> &'a str {
        view.get(key).and_then(Value::as_str).unwrap_or("")
    }

    fn lower_hex(s: &str) -> bool {
        s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    }

    #[test]
    fn each_provider_gets_its_own_shapes() {
        let id = "65a1b2c3d4e5f60718293a4b";
        let aws = outputs("AWS", id);
        let endpoint = text(&aws, "interfaceEndpointId");
        let digits = endpoint.strip_prefix("vpce-").unwrap_or("");
        assert!(digits.len() == 17 && lower_hex(digits), "{endpoint}");
        let account = text(&aws, "providerAccountId");
        assert!(account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()));
        assert!(!aws.contains_key("interfaceEndpointName"));

        let gcp = outputs("GCP", id);
        assert!(text(&gcp, "interfaceEndpointId").starts_with("vpce-"));
        let project = text(&gcp, "providerAccountId");
        assert!((6..=30).contains(&project.len()) && project.starts_with("p-"));

        let azure = outputs("AZURE", id);
        let subscription = text(&azure, "providerAccountId");
        let parts: Vec<usize> = subscription.split('-').map(str::len).collect();
        assert_eq!(parts, [8, 4, 4, 4, 12], "{subscription}");
        let endpoint = text(&azure, "interfaceEndpointId");
        let name = text(&azure, "interfaceEndpointName");
        assert!(endpoint.starts_with(&format!("/subscriptions/{subscription}/resourceGroups/")));
        assert!(endpoint.ends_with(&format!(
            "/providers/Microsoft.Network/privateEndpoints/{name}"
        )));

        assert!(outputs("ORACLE", id).is_empty());
    }

    #[test]
    fn outputs_are_stable_per_connection_and_differ_between_connections() {
        let a = outputs("AWS", "65a1b2c3d4e5f60718293a4b");
        assert_eq!(a, outputs("AWS", "65a1b2c3d4e5f60718293a4b"));
        assert_ne!(a, outputs("AWS", "65a1b2c3d4e5f60718293a4c"));
    }
}
