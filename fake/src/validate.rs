//! Checks a create body the way Atlas does (reasonably, not exhaustively) and computes the key that
//! makes two bodies "the same connection" for duplicate detection.
//!
//! The tables here are the fake's own, written from Atlas's API documentation rather than taken from the
//! product's model, so that a mistake in the product's tables shows up as a refusal here.

use serde_json::{Map, Value};

/// Each provider and the vendors Atlas accepts for it; `GENERIC` is what an omitted vendor means.
const PROVIDERS: [(&str, &[&str]); 3] = [
    (
        "AWS",
        &["GENERIC", "MSK", "CONFLUENT", "KINESIS", "S3", "LAMBDA"],
    ),
    (
        "AZURE",
        &["GENERIC", "EVENTHUB", "CONFLUENT", "AZURE_BLOB_STORAGE"],
    ),
    ("GCP", &["GENERIC", "CONFLUENT", "PUBSUB"]),
];

/// `authenticationScheme` values Atlas accepts (MSK only; ignored for other vendors).
const AUTH_SCHEMES: [&str; 3] = ["TLS", "SASL_SCRAM", "IAM"];

/// What Atlas uses when an MSK create leaves `authenticationScheme` out.
const MSK_DEFAULT_SCHEME: &str = "SASL_SCRAM";

/// Atlas's project id pattern, `^[a-f0-9]{24}$` (upper case is refused).
pub(crate) fn is_group_id(s: &str) -> bool {
    s.len() == 24 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The provider's canonical (upper-case) name; any case is accepted.
fn provider_of(s: &str) -> Option<&'static str> {
    PROVIDERS
        .iter()
        .map(|(p, _)| *p)
        .find(|p| p.eq_ignore_ascii_case(s))
}

/// The vendor's canonical name if any provider knows it; any case is accepted.
fn vendor_of(s: &str) -> Option<&'static str> {
    PROVIDERS
        .iter()
        .flat_map(|(_, vendors)| vendors.iter().copied())
        .find(|v| v.eq_ignore_ascii_case(s))
}

fn vendors_of(provider: &str) -> &'static [&'static str] {
    PROVIDERS
        .iter()
        .find(|(p, _)| *p == provider)
        .map(|(_, v)| *v)
        .unwrap_or(&[])
}

fn is_auth_scheme(s: &str) -> bool {
    AUTH_SCHEMES.iter().any(|a| a.eq_ignore_ascii_case(s))
}

/// One `badRequestDetail.fields` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldError {
    pub field: String,
    pub description: String,
}

fn err(field: &str, description: impl Into<String>) -> FieldError {
    FieldError {
        field: field.to_owned(),
        description: description.into(),
    }
}

const STRING_FIELDS: [&str; 7] = [
    "provider",
    "vendor",
    "region",
    "arn",
    "serviceEndpointId",
    "dnsDomain",
    "authenticationScheme",
];
const LIST_FIELDS: [&str; 4] = [
    "dnsSubDomain",
    "azureResourceIds",
    "gcpConnectionIds",
    "gcpServiceAttachmentUris",
];
const READ_ONLY: [&str; 7] = [
    "_id",
    "state",
    "errorMessage",
    "interfaceEndpointId",
    "interfaceEndpointName",
    "providerAccountId",
    "links",
];

/// Every problem with a create body; empty when Atlas would accept it.
pub(crate) fn validate_create(body: &Map<String, Value>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (key, value) in body {
        if READ_ONLY.contains(&key.as_str()) {
            errors.push(err(key, "is read-only and cannot be set"));
        } else if STRING_FIELDS.contains(&key.as_str()) {
            if !value.is_string() {
                errors.push(err(key, "must be a string"));
            }
        } else if LIST_FIELDS.contains(&key.as_str()) {
            let ok = value
                .as_array()
                .is_some_and(|items| items.iter().all(Value::is_string));
            if !ok {
                errors.push(err(key, "must be an array of strings"));
            }
        } else {
            errors.push(err(key, "is not a known attribute"));
        }
    }
    let text = |k: &str| body.get(k).and_then(Value::as_str);
    let has = |k: &str| body.get(k).is_some_and(|v| !v.is_null());

    let provider = match text("provider") {
        None if !has("provider") => {
            errors.push(err("provider", "is required"));
            None
        }
        None => None,
        Some(p) => {
            let parsed = provider_of(p);
            if parsed.is_none() {
                errors.push(err(
                    "provider",
                    format!("`{p}` is not one of AWS, AZURE, GCP"),
                ));
            }
            parsed
        }
    };
    let vendor = match text("vendor") {
        None => Some("GENERIC"),
        Some(v) => {
            let parsed = vendor_of(v);
            if parsed.is_none() {
                errors.push(err("vendor", format!("`{v}` is not a known vendor")));
            }
            parsed
        }
    };
    if let Some(scheme) = text("authenticationScheme")
        && !is_auth_scheme(scheme)
    {
        errors.push(err(
            "authenticationScheme",
            format!("`{scheme}` is not one of TLS, SASL_SCRAM, IAM"),
        ));
    }
    if let Some(arn) = text("arn")
        && !arn.starts_with("arn:aws:kafka")
    {
        errors.push(err("arn", "must match the pattern ^arn:aws:kafka"));
    }
    for list in ["gcpConnectionIds", "gcpServiceAttachmentUris"] {
        if let Some(items) = body.get(list).and_then(Value::as_array) {
            if items.len() > 3 {
                errors.push(err(list, "must not hold more than 3 elements"));
            }
            let mut seen: Vec<&Value> = Vec::new();
            for item in items {
                if seen.contains(&item) {
                    errors.push(err(list, "must not hold repeated elements"));
                    break;
                }
                seen.push(item);
            }
        }
    }
    if let (Some(provider), Some(vendor)) = (provider, vendor) {
        if !vendors_of(provider).contains(&vendor) {
            errors.push(err(
                "vendor",
                format!("{vendor} is not a vendor of provider {provider}"),
            ));
        } else {
            let (required, forbidden) = rules(provider, vendor);
            for field in required {
                if !has(field) {
                    errors.push(err(
                        field,
                        format!("is required for provider {provider} with vendor {vendor}"),
                    ));
                }
            }
            for field in forbidden {
                if has(field) {
                    errors.push(err(
                        field,
                        format!("must not be set for provider {provider} with vendor {vendor}"),
                    ));
                }
            }
            if (provider, vendor) == ("GCP", "CONFLUENT")
                && let Some(uris) = body
                    .get("gcpServiceAttachmentUris")
                    .and_then(Value::as_array)
                && uris.len() != 1
                && uris.len() != 3
            {
                errors.push(err(
                    "gcpServiceAttachmentUris",
                    "must hold 1 or 3 service attachment URIs for GCP CONFLUENT",
                ));
            }
        }
    }
    errors
}

/// Required and forbidden fields per provider and vendor, from Atlas's documented table.
fn rules(provider: &str, vendor: &str) -> (&'static [&'static str], &'static [&'static str]) {
    match (provider, vendor) {
        ("AWS", "MSK") => (&["arn"], &["region"]),
        // Confluent Enterprise and Serverless clusters are created without `dnsDomain`: Confluent
        // produces it from the endpoint, and it is set later with PATCH.
        ("AWS", "CONFLUENT") => (&["region", "serviceEndpointId", "dnsSubDomain"], &[]),
        ("AWS", "S3" | "LAMBDA") => (&["region", "serviceEndpointId"], &[]),
        // MongoDB's docs list only `region`; `serviceEndpointId` is accepted too.
        ("AWS", "KINESIS") => (&["region"], &[]),
        ("AZURE", "EVENTHUB") => (&["region", "dnsDomain", "serviceEndpointId"], &[]),
        ("AZURE", "CONFLUENT") => (
            &["region", "dnsDomain", "azureResourceIds"],
            &["serviceEndpointId"],
        ),
        ("AZURE", "AZURE_BLOB_STORAGE") => (&["region", "serviceEndpointId", "dnsDomain"], &[]),
        ("GCP", "CONFLUENT") => (&["region", "dnsDomain", "gcpServiceAttachmentUris"], &[]),
        ("GCP", "PUBSUB") => (&["region"], &[]),
        _ => (&[], &[]),
    }
}

/// An AWS Confluent connection created without `dnsDomain`: it stays `IDLE` ("pending") until a
/// PATCH sets the domain.
pub(crate) fn awaits_domain(body: &Map<String, Value>) -> bool {
    let is = |k: &str, want: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .is_some_and(|v| v.eq_ignore_ascii_case(want))
    };
    is("provider", "AWS")
        && is("vendor", "CONFLUENT")
        && body.get("dnsDomain").is_none_or(Value::is_null)
}

/// The body as a later get shows it: provider, vendor and scheme upper-cased, `GENERIC` for an
/// omitted vendor, and for MSK the region Atlas derives from the ARN and the scheme it defaults to.
/// `authenticationScheme` applies to MSK only, so other vendors' reads do not carry it. The region
/// is never rewritten: Atlas returns it spelled as it was sent.
pub(crate) fn stored_view(body: &Map<String, Value>) -> Map<String, Value> {
    let mut view = body.clone();
    for key in ["provider", "vendor", "authenticationScheme"] {
        if let Some(Value::String(s)) = view.get_mut(key) {
            *s = s.to_ascii_uppercase();
        }
    }
    if !view.contains_key("vendor") {
        view.insert("vendor".into(), Value::String("GENERIC".into()));
    }
    let is_msk = view.get("vendor").and_then(Value::as_str) == Some("MSK");
    if !is_msk {
        view.remove("authenticationScheme");
    } else if view.get("authenticationScheme").is_none_or(Value::is_null) {
        view.insert(
            "authenticationScheme".into(),
            Value::String(MSK_DEFAULT_SCHEME.into()),
        );
    }
    if is_msk
        && !view.contains_key("region")
        && let Some(region) = view
            .get("arn")
            .and_then(Value::as_str)
            .and_then(|arn| arn.split(':').nth(3))
            .filter(|r| !r.is_empty())
    {
        view.insert("region".into(), Value::String(region.to_owned()));
    }
    view
}

/// The canonical form of a body for duplicate detection: case of enums, DNS names and regions settled,
/// defaults filled in (vendor, MSK scheme),
/// set-like lists sorted and without repeats, keys in a fixed (sorted) order.
pub(crate) fn duplicate_key(body: &Map<String, Value>) -> String {
    let mut canon = stored_view(body);
    // The derived MSK region is not part of what was asked for.
    if !body.contains_key("region") {
        canon.remove("region");
    }
    if let Some(Value::String(d)) = canon.get_mut("dnsDomain") {
        *d = d.to_ascii_lowercase();
    }
    // `us-east-1`, `US_EAST_1` and `us_east_1` name one region: a second connection that differs
    // only in spelling is still a duplicate (and costs the same).
    if let Some(Value::String(r)) = canon.get_mut("region") {
        *r = r.to_ascii_lowercase().replace('_', "-");
    }
    for list in LIST_FIELDS {
        if let Some(Value::Array(items)) = canon.get_mut(list) {
            let mut strings: Vec<String> = items
                .iter()
                .filter_map(Value::as_str)
                .map(|s| {
                    if list == "dnsSubDomain" {
                        s.to_ascii_lowercase()
                    } else {
                        s.to_owned()
                    }
                })
                .collect();
            strings.sort();
            strings.dedup();
            *items = strings.into_iter().map(Value::String).collect();
        }
    }
    // serde_json's Map is a BTreeMap here (no `preserve_order`), so the text is canonical.
    Value::Object(canon).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn msk_with_arn_is_valid_and_with_region_is_not() {
        let ok = obj(
            json!({"provider": "aws", "vendor": "msk", "arn": "arn:aws:kafka:us-east-1:1:cluster/a/b"}),
        );
        assert!(validate_create(&ok).is_empty());
        let mut bad = ok.clone();
        bad.insert("region".into(), json!("us-east-1"));
        let errors = validate_create(&bad);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "region");
    }

    #[test]
    fn group_ids_are_24_lower_hex() {
        assert!(is_group_id("32b6e34b3d91647abb20e7b8"));
        assert!(!is_group_id("32B6E34B3D91647ABB20E7B8"));
        assert!(!is_group_id("32b6e34b3d91647abb20e7b"));
        assert!(!is_group_id("32b6e34b3d91647abb20e7bg"));
    }

    #[test]
    fn vendors_belong_to_their_provider_in_any_case() {
        let ok = obj(
            json!({"provider": "Azure", "vendor": "azure_blob_storage", "region": "eastus2",
            "serviceEndpointId": "/subscriptions/x", "dnsDomain": "a.blob.core.windows.net"}),
        );
        assert!(
            validate_create(&ok).is_empty(),
            "{:?}",
            validate_create(&ok)
        );
        let wrong = obj(json!({"provider": "gcp", "vendor": "msk", "region": "us-east1"}));
        let errors = validate_create(&wrong);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0]
                .description
                .contains("not a vendor of provider GCP")
        );
        let unknown = obj(json!({"provider": "AWS", "vendor": "KAFKA"}));
        assert!(
            validate_create(&unknown)[0]
                .description
                .contains("not a known vendor")
        );
        let scheme = obj(json!({"provider": "AWS", "vendor": "MSK",
            "arn": "arn:aws:kafka:us-east-1:1:cluster/a/b", "authenticationScheme": "sasl_plain"}));
        assert_eq!(validate_create(&scheme)[0].field, "authenticationScheme");
    }

    #[test]
    fn aws_confluent_needs_no_domain_and_kinesis_only_a_region() {
        let confluent = obj(
            json!({"provider": "AWS", "vendor": "CONFLUENT", "region": "us-east-1",
            "serviceEndpointId": "com.amazonaws.vpce.us-east-1.vpce-svc-0123", "dnsSubDomain": []}),
        );
        assert!(validate_create(&confluent).is_empty());
        assert!(awaits_domain(&confluent));
        let mut with_domain = confluent.clone();
        with_domain.insert(
            "dnsDomain".into(),
            json!("abc.us-east-1.aws.confluent.cloud"),
        );
        assert!(!awaits_domain(&with_domain));
        let mut no_subdomains = confluent.clone();
        no_subdomains.remove("dnsSubDomain");
        assert_eq!(validate_create(&no_subdomains)[0].field, "dnsSubDomain");
        let kinesis = obj(json!({"provider": "aws", "vendor": "kinesis", "region": "us-east-1"}));
        assert!(validate_create(&kinesis).is_empty());
        let mut with_endpoint = kinesis.clone();
        with_endpoint.insert(
            "serviceEndpointId".into(),
            json!("com.amazonaws.us-east-1.kinesis-streams"),
        );
        assert!(validate_create(&with_endpoint).is_empty());
        let s3 = obj(json!({"provider": "AWS", "vendor": "S3", "region": "us-east-1"}));
        assert_eq!(validate_create(&s3)[0].field, "serviceEndpointId");
    }

    #[test]
    fn every_problem_is_reported() {
        let bad = obj(json!({"vendor": "NOPE", "state": "DONE", "gcpConnectionIds": [1], "x": 1}));
        let fields: Vec<String> = validate_create(&bad).into_iter().map(|e| e.field).collect();
        for f in ["provider", "vendor", "state", "gcpConnectionIds", "x"] {
            assert!(
                fields.contains(&f.to_owned()),
                "{f} missing from {fields:?}"
            );
        }
    }

    #[test]
    fn duplicate_key_ignores_case_and_order() {
        let a = obj(
            json!({"provider": "aws", "vendor": "Confluent", "region": "us-east-1",
            "serviceEndpointId": "svc", "dnsDomain": "Example.COM", "dnsSubDomain": ["b", "A"]}),
        );
        let b = obj(
            json!({"provider": "AWS", "vendor": "CONFLUENT", "region": "us-east-1",
            "serviceEndpointId": "svc", "dnsDomain": "example.com", "dnsSubDomain": ["a", "b", "a"]}),
        );
        assert_eq!(duplicate_key(&a), duplicate_key(&b));
        let mut c = b.clone();
        c.insert("serviceEndpointId".into(), json!("other"));
        assert_ne!(duplicate_key(&a), duplicate_key(&c));
    }

    #[test]
    fn msk_scheme_defaults_to_sasl_scram_and_other_vendors_drop_it() {
        let bare = obj(json!({"provider": "AWS", "vendor": "MSK",
            "arn": "arn:aws:kafka:us-east-1:1:cluster/a/b"}));
        assert_eq!(stored_view(&bare)["authenticationScheme"], "SASL_SCRAM");
        let mut explicit = bare.clone();
        explicit.insert("authenticationScheme".into(), json!("sasl_scram"));
        assert_eq!(duplicate_key(&bare), duplicate_key(&explicit));
        explicit.insert("authenticationScheme".into(), json!("IAM"));
        assert_ne!(duplicate_key(&bare), duplicate_key(&explicit));

        let pubsub = obj(
            json!({"provider": "GCP", "vendor": "PUBSUB", "region": "us-east1",
            "authenticationScheme": "tls"}),
        );
        assert!(validate_create(&pubsub).is_empty());
        assert!(stored_view(&pubsub).get("authenticationScheme").is_none());
        let mut without = pubsub.clone();
        without.remove("authenticationScheme");
        assert_eq!(duplicate_key(&pubsub), duplicate_key(&without));
    }

    #[test]
    fn regions_are_kept_as_sent_but_compared_loosely() {
        let a = obj(
            json!({"provider": "AWS", "vendor": "S3", "region": "US_EAST_1",
            "serviceEndpointId": "com.amazonaws.us-east-1.s3"}),
        );
        assert_eq!(stored_view(&a)["region"], "US_EAST_1");
        let mut b = a.clone();
        b.insert("region".into(), json!("us-east-1"));
        assert_eq!(duplicate_key(&a), duplicate_key(&b));
        b.insert("region".into(), json!("us-east-2"));
        assert_ne!(duplicate_key(&a), duplicate_key(&b));
    }

    #[test]
    fn view_fills_generic_and_msk_region() {
        let v = stored_view(&obj(json!({"provider": "gcp", "region": "us-east1"})));
        assert_eq!(v["vendor"], "GENERIC");
        assert_eq!(v["provider"], "GCP");
        let m = stored_view(&obj(
            json!({"provider": "aws", "vendor": "msk", "arn": "arn:aws:kafka:eu-west-1:1:cluster/a/b"}),
        ));
        assert_eq!(m["region"], "eu-west-1");
    }
}
