//! The manifest JSON Schema (`atlas-linkd schema`) against the validator: the committed file is the
//! command's output, every valid manifest passes it, the invalid corpus files whose mistake a schema
//! can express fail it, and nothing the schema refuses is accepted by the validator.

use atlas_linkd::manifest::{self, schema};
use jsonschema::Validator;
use proptest::prelude::*;
use serde::Deserialize;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn validator() -> &'static Validator {
    static V: OnceLock<Validator> = OnceLock::new();
    V.get_or_init(|| jsonschema::validator_for(&schema::manifest_schema()).unwrap())
}

/// Each YAML document of a file, as JSON (what an editor checks against the schema).
fn documents(file: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(file).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|de| {
            let doc = serde_yaml::Value::deserialize(de)
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            serde_json::to_value(doc).unwrap()
        })
        .collect()
}

fn schema_errors(file: &Path) -> Vec<String> {
    documents(file)
        .iter()
        .flat_map(|doc| {
            validator()
                .iter_errors(doc)
                .map(|e| format!("{}: {e}", e.instance_path()))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn the_committed_schema_is_the_commands_output() {
    let committed = std::fs::read_to_string(root().join("schema/manifest.schema.json")).unwrap();
    assert!(
        committed == schema::manifest_schema_text(),
        "schema/manifest.schema.json is stale: run `atlas-linkd schema > schema/manifest.schema.json`"
    );
    let parsed: Value = serde_json::from_str(&committed).unwrap();
    assert_eq!(parsed["$id"], schema::SCHEMA_ID);
    assert_eq!(parsed["$schema"], "http://json-schema.org/draft-07/schema#");
    // The schema is itself a valid draft-07 schema.
    assert!(jsonschema::draft7::meta::is_valid(&parsed));
}

/// Draft-07 ignores keywords beside `$ref`, so a description or constraint there would be lost.
#[test]
fn no_ref_has_siblings() {
    fn walk(v: &Value, at: &str) {
        match v {
            Value::Object(map) => {
                assert!(
                    !map.contains_key("$ref") || map.len() == 1,
                    "{at}: `$ref` with siblings"
                );
                for (k, v) in map {
                    walk(v, &format!("{at}/{k}"));
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    walk(v, &format!("{at}/{i}"));
                }
            }
            _ => {}
        }
    }
    walk(&schema::manifest_schema(), "#");
}

#[test]
fn every_valid_manifest_passes_the_schema() {
    let mut files = manifest::discover(&[root().join("config/manifests")]).unwrap();
    assert!(files.len() >= 3, "only {} example manifests", files.len());
    files.extend(manifest::discover(&[root().join("tests/data/valid")]).unwrap());
    for file in files {
        manifest::parse_file(&file).unwrap_or_else(|p| panic!("{p}"));
        let errors = schema_errors(&file);
        assert!(
            errors.is_empty(),
            "{}:\n{}",
            file.display(),
            errors.join("\n")
        );
    }
}

#[test]
fn the_example_manifests_point_at_the_committed_schema() {
    for file in manifest::discover(&[root().join("config/manifests")]).unwrap() {
        let text = std::fs::read_to_string(&file).unwrap();
        let first = text.lines().next().unwrap_or_default();
        let target = first
            .strip_prefix("# yaml-language-server: $schema=")
            .unwrap_or_else(|| panic!("{}: no modeline on its first line", file.display()));
        let resolved = file.parent().unwrap().join(target);
        assert_eq!(
            resolved.canonicalize().unwrap(),
            root()
                .join("schema/manifest.schema.json")
                .canonicalize()
                .unwrap(),
            "{}",
            file.display()
        );
    }
}

/// Invalid corpus files whose mistake the schema expresses.
const SCHEMA_CATCHES: &[&str] = &[
    "arn-outside-aws.yaml",
    "arn-pattern.yaml",
    "auth-scheme-from-defaults.yaml",
    "auth-scheme-outside-msk.yaml",
    "auth-scheme-unknown.yaml",
    "aws-confluent-subdomain-missing.yaml",
    "azure-confluent-service-endpoint-forbidden.yaml",
    "azure-eventhub-dns-missing.yaml",
    "azure-ids-on-gcp.yaml",
    "document-not-mapping.yaml",
    "empty-list-item.yaml",
    "gcp-confluent-two-uris.yaml",
    "gcp-connection-ids-too-many.yaml",
    "gcp-uris-repeated.yaml",
    "generic-region-missing.yaml",
    "group-id-missing.yaml",
    "group-id-not-hex.yaml",
    "group-id-too-short.yaml",
    "group-id-upper-case.yaml",
    "kinesis-region-missing.yaml",
    "link-name-bad-characters.yaml",
    "link-name-empty.yaml",
    "link-name-missing.yaml",
    "link-not-mapping.yaml",
    "msk-arn-missing.yaml",
    "msk-region-forbidden.yaml",
    "msk-region-from-defaults.yaml",
    "name-in-defaults.yaml",
    "number-for-string.yaml",
    "projects-not-a-list.yaml",
    "provider-missing.yaml",
    "provider-unknown.yaml",
    "read-only-id.yaml",
    "read-only-interface-endpoint.yaml",
    "read-only-state.yaml",
    "second-document-error.yaml",
    "string-for-list.yaml",
    "unknown-link-key-case.yaml",
    "unknown-link-key-typo.yaml",
    "unknown-project-key.yaml",
    "unknown-top-level-key.yaml",
    "vendor-unknown.yaml",
    "vendor-wrong-provider.yaml",
];

/// Invalid corpus files only the validator refuses, and why a schema cannot.
const VALIDATOR_ONLY: &[(&str, &str)] = &[
    (
        "link-name-duplicate.yaml",
        "uniqueness of one key across list items (and across files) is not expressible",
    ),
    (
        "project-two-names.yaml",
        "a project's entries agreeing on `name` compares values across list items",
    ),
    (
        "same-connection-msk-default-scheme.yaml",
        "two links with the same normalised spec needs the spec's normalisation",
    ),
    (
        "same-connection-region-spelling.yaml",
        "two links with the same normalised spec needs the spec's normalisation",
    ),
    (
        "same-connection-twice.yaml",
        "two links with the same normalised spec needs the spec's normalisation",
    ),
    (
        "yaml-syntax-error.yaml",
        "not YAML at all: the editor's YAML parser reports it before any schema applies",
    ),
    (
        "control-character-nul.yaml",
        "not YAML at all (a NUL byte): the editor's YAML parser reports it before any schema applies",
    ),
    (
        "group-id-24-digits.yaml",
        "an integer wider than 64 bits: YAML parsers fail on it or make it a float before any schema applies",
    ),
    (
        "tag-binary.yaml",
        "an explicit tag is resolved (or dropped) by the YAML parser before any schema applies",
    ),
    (
        "tag-core-str.yaml",
        "an explicit tag is resolved (or dropped) by the YAML parser before any schema applies",
    ),
];

/// Corpus files this test's YAML parser cannot read, so no schema can be applied to them.
const NOT_YAML: &[&str] = &[
    "yaml-syntax-error.yaml",
    "control-character-nul.yaml",
    "group-id-24-digits.yaml",
];

#[test]
fn the_invalid_corpus_is_classified_and_the_schema_refuses_what_it_can() {
    let dir = root().join("tests/data/invalid");
    let mut names: Vec<String> = manifest::discover(std::slice::from_ref(&dir))
        .unwrap()
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut listed: Vec<String> = SCHEMA_CATCHES
        .iter()
        .copied()
        .chain(VALIDATOR_ONLY.iter().map(|(n, _)| *n))
        .map(str::to_owned)
        .collect();
    listed.sort();
    assert_eq!(
        names, listed,
        "every invalid corpus file is listed once here"
    );
    let mut missed = Vec::new();
    for name in SCHEMA_CATCHES {
        if schema_errors(&dir.join(name)).is_empty() {
            missed.push(*name);
        }
    }
    assert!(missed.is_empty(), "the schema accepts: {missed:?}");
    // The validator-only ones that are YAML pass the schema: the lists above say what each is.
    for (name, _) in VALIDATOR_ONLY {
        if !NOT_YAML.contains(name) {
            let errors = schema_errors(&dir.join(name));
            assert!(
                errors.is_empty(),
                "{name}: the schema refuses it: {errors:?}; move it"
            );
        }
    }
}

fn manifest_with(project: Value) -> Value {
    json!({"projects": [project]})
}

fn validator_accepts(doc: &Value) -> bool {
    let text = serde_json::to_string(doc).unwrap();
    manifest::parse_str(Path::new("generated.yaml"), &text).is_ok()
}

#[test]
fn link_names_are_judged_alike() {
    let long_ok = "a".repeat(100);
    let too_long = "a".repeat(101);
    for name in [
        "l1",
        "A.b-c_d",
        "9lives",
        "-lead",
        "_lead",
        ".lead",
        "has space",
        "ünï",
        "x/y",
        "",
        &long_ok,
        &too_long,
    ] {
        let doc = manifest_with(json!({
            "groupId": "32b6e34b3d91647abb20e7b8",
            "links": [{"name": name, "provider": "GCP", "region": "r"}],
        }));
        assert_eq!(
            validator().is_valid(&doc),
            validator_accepts(&doc),
            "name {name:?}"
        );
    }
}

/// Candidate values per link field, `null` (drops a default) included; `None` in a slot leaves the
/// key out.
fn candidates(key: &str) -> Vec<Value> {
    let list = || {
        vec![
            json!([]),
            json!(["a"]),
            json!(["a", "b"]),
            json!(["a", "b", "c"]),
            Value::Null,
        ]
    };
    match key {
        "provider" => vec![
            json!("AWS"),
            json!("azure"),
            json!("GCP"),
            json!("ORACLE"),
            Value::Null,
        ],
        "vendor" => vec![
            json!("MSK"),
            json!("confluent"),
            json!("KINESIS"),
            json!("S3"),
            json!("LAMBDA"),
            json!("EVENTHUB"),
            json!("AZURE_BLOB_STORAGE"),
            json!("pubsub"),
            json!("GENERIC"),
            json!("KAFKA"),
            Value::Null,
        ],
        "arn" => vec![
            json!("arn:aws:kafka:us-east-1:1:cluster/a/1"),
            json!("arn:aws:s3:::b"),
            Value::Null,
        ],
        "authenticationScheme" => vec![json!("IAM"), json!("tls"), json!("KERBEROS"), Value::Null],
        "dnsSubDomain" | "azureResourceIds" | "gcpConnectionIds" | "gcpServiceAttachmentUris" => {
            list()
        }
        _ => vec![json!("x"), Value::Null],
    }
}

/// The link fields, as the schema lists them (refused keys and `name` aside), so that a new field
/// is generated too.
fn link_keys() -> &'static [String] {
    static KEYS: OnceLock<Vec<String>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let schema = schema::manifest_schema();
        let properties = schema["definitions"]["link"]["properties"]
            .as_object()
            .unwrap();
        properties
            .iter()
            .filter(|(k, v)| *k != "name" && v.get("not").is_none())
            .map(|(k, _)| k.clone())
            .collect()
    })
}

/// One valid link (all its fields its own) per provider/vendor pair: the generator mutates these, so
/// that most manifests are valid or nearly so, where the schema's rules matter.
fn seeds() -> Vec<Value> {
    let kafka = "arn:aws:kafka:us-east-1:1:cluster/a/1";
    vec![
        json!({"provider": "AWS", "region": "us-east-1", "serviceEndpointId": "x"}),
        json!({"provider": "AWS", "vendor": "MSK", "arn": kafka, "authenticationScheme": "IAM"}),
        json!({"provider": "AWS", "vendor": "CONFLUENT", "region": "us-east-1", "serviceEndpointId": "x", "dnsDomain": "d", "dnsSubDomain": ["a"]}),
        json!({"provider": "AWS", "vendor": "KINESIS", "region": "us-east-1"}),
        json!({"provider": "AWS", "vendor": "S3", "region": "us-east-1", "serviceEndpointId": "x"}),
        json!({"provider": "aws", "vendor": "lambda", "region": "us-east-1", "serviceEndpointId": "x"}),
        json!({"provider": "AZURE", "region": "eastus2"}),
        json!({"provider": "AZURE", "vendor": "EVENTHUB", "region": "eastus2", "dnsDomain": "d", "serviceEndpointId": "x"}),
        json!({"provider": "AZURE", "vendor": "CONFLUENT", "region": "eastus2", "dnsDomain": "d", "azureResourceIds": ["a"]}),
        json!({"provider": "AZURE", "vendor": "AZURE_BLOB_STORAGE", "region": "eastus2", "dnsDomain": "d", "serviceEndpointId": "x"}),
        json!({"provider": "GCP", "region": "us-central1", "gcpConnectionIds": ["a"]}),
        json!({"provider": "GCP", "vendor": "CONFLUENT", "region": "us-central1", "dnsDomain": "d", "gcpServiceAttachmentUris": ["a"]}),
        json!({"provider": "gcp", "vendor": "PUBSUB", "region": "us-central1"}),
    ]
}

/// One generated link: which seed, which of its keys it leaves to `defaults`, and up to two keys set
/// to a candidate value (`null` included).
type LinkPlan = (usize, Vec<bool>, Vec<(usize, usize)>);

fn link_plan() -> impl Strategy<Value = LinkPlan> {
    (
        0usize..13,
        proptest::collection::vec(proptest::bool::weighted(0.2), link_keys().len()),
        proptest::collection::vec((0..link_keys().len(), 0usize..16), 0..3),
    )
}

fn pick(key: &str, i: usize) -> Value {
    let values = candidates(key);
    values[i % values.len()].clone()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Soundness: whatever the schema refuses, the validator refuses too.
    #[test]
    fn the_schema_refuses_only_what_the_validator_refuses(
        defaults in proptest::option::of(proptest::collection::vec(
            proptest::option::weighted(0.15, 0usize..16),
            link_keys().len(),
        )),
        links in proptest::collection::vec(link_plan(), 1..4),
    ) {
        let seeds = seeds();
        let mut project = json!({"groupId": "32b6e34b3d91647abb20e7b8"});
        if let Some(d) = &defaults {
            let mut map = serde_json::Map::new();
            for (key, choice) in link_keys().iter().zip(d) {
                if let Some(i) = choice {
                    map.insert(key.clone(), pick(key, *i));
                }
            }
            project["defaults"] = Value::Object(map);
        }
        project["links"] = links
            .iter()
            .enumerate()
            .map(|(n, (seed, inherit, changes))| {
                let mut link = seeds[*seed].as_object().unwrap().clone();
                for (key, leave) in link_keys().iter().zip(inherit) {
                    if *leave {
                        link.remove(key);
                    }
                }
                for (k, i) in changes {
                    link.insert(link_keys()[*k].clone(), pick(&link_keys()[*k], *i));
                }
                link.insert("name".into(), json!(format!("l{n}")));
                Value::Object(link)
            })
            .collect();
        let doc = manifest_with(project);
        if !validator().is_valid(&doc) {
            let errors: Vec<String> = validator().iter_errors(&doc).map(|e| e.to_string()).collect();
            prop_assert!(!validator_accepts(&doc), "schema refuses, validator accepts: {doc}\n{errors:?}");
        }
    }
}
