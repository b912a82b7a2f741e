//! Unit tests of the domain types: ids, specs and their normal form, fingerprints, matching and identity.

use super::identity::identity_fields;
use super::*;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::path::Path;

fn msk() -> LinkSpec {
    LinkSpec {
        arn: Some("arn:aws:kafka:us-east-1:123456789012:cluster/orders/5a6b".into()),
        authentication_scheme: Some(AuthScheme::Iam),
        ..LinkSpec::new(Provider::Aws, Vendor::Msk)
    }
}

fn remote_of(spec: &LinkSpec) -> RemoteConnection {
    RemoteConnection {
        id: "65a1b2c3d4e5f60718293a4b".into(),
        provider: Some(spec.provider.as_str().to_ascii_lowercase()),
        vendor: Some(spec.vendor.as_str().into()),
        region: Some("us-east-1".into()),
        arn: spec.arn.clone(),
        authentication_scheme: None,
        state: Some(RemoteState::Done),
        ..Default::default()
    }
}

#[test]
fn group_id_accepts_only_24_lower_hex() {
    assert!(GroupId::parse("32b6e34b3d91647abb20e7b8").is_ok());
    assert!(GroupId::parse("32B6E34B3D91647ABB20E7B8").is_err());
    assert!(GroupId::parse("32b6e34b3d91647abb20e7b").is_err());
    assert!(GroupId::parse("32b6e34b3d91647abb20e7bz").is_err());
}

#[test]
fn generic_vendor_is_not_sent() {
    let mut spec = msk();
    spec.vendor = Vendor::Generic;
    assert!(!spec.to_json().contains("vendor"));
    assert!(msk().to_json().contains(r#""vendor":"MSK""#));
}

#[test]
fn remote_with_region_filled_in_matches() {
    let spec = msk();
    assert!(spec.matches(&remote_of(&spec)));
}

#[test]
fn remote_with_other_arn_does_not_match() {
    let spec = msk();
    let mut remote = remote_of(&spec);
    remote.arn = Some("arn:aws:kafka:us-east-1:123456789012:cluster/other/1".into());
    assert!(!spec.matches(&remote));
}

#[test]
fn deleting_remote_never_matches() {
    let spec = msk();
    let mut remote = remote_of(&spec);
    remote.state = Some(RemoteState::Deleting);
    assert!(!spec.matches(&remote));
}

#[test]
fn omitted_remote_vendor_means_generic() {
    let mut spec = msk();
    spec.vendor = Vendor::Generic;
    let mut remote = remote_of(&spec);
    remote.vendor = None;
    assert!(spec.matches(&remote));
    spec.vendor = Vendor::Msk;
    assert!(!spec.matches(&remote));
}

#[test]
fn fingerprint_is_written_as_64_hex_digits_and_read_back() {
    let fp = msk().fingerprint();
    let hex = fp.to_string();
    assert_eq!(hex.len(), 64);
    assert!(
        hex.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    assert_eq!(fp.to_hex(), hex);
    assert_eq!(fp.short(), hex[..12]);
    assert_eq!(Fingerprint::from_hex(&hex), Some(fp));
    assert_eq!(serde_json::to_string(&fp).unwrap(), format!("\"{hex}\""));
    let back: Fingerprint = serde_json::from_str(&format!("\"{hex}\"")).unwrap();
    assert_eq!(back, fp);
    assert_eq!(Fingerprint::from_hex(&hex[..63]), None);
    assert_eq!(Fingerprint::from_hex(&"zz".repeat(32)), None);
    assert!(serde_json::from_str::<Fingerprint>("\"abc\"").is_err());
}

#[test]
fn desired_link_fingerprint_is_that_of_its_normal_form() {
    let mut spec = msk();
    spec.vendor = Vendor::Confluent;
    spec.dns_sub_domain = Some(vec!["B".into(), "a".into()]);
    let source = Source {
        file: Path::new("m.yaml").into(),
        line: None,
    };
    let key = LinkKey::new(GroupId::parse("32b6e34b3d91647abb20e7b8").unwrap(), "x");
    let link = DesiredLink::new(key, spec.clone(), source);
    assert_eq!(link.fingerprint, spec.fingerprint());
    assert_eq!(link.spec, spec.normalised());
}

/// The connection Atlas lists for `spec`: upper-case provider and vendor, every field echoed,
/// MSK's default scheme filled in.
fn echo(id: &str, spec: &LinkSpec) -> RemoteConnection {
    RemoteConnection {
        id: id.into(),
        provider: Some(spec.provider.as_str().into()),
        vendor: Some(spec.vendor.as_str().into()),
        region: spec.region.clone(),
        arn: spec.arn.clone(),
        service_endpoint_id: spec.service_endpoint_id.clone(),
        dns_domain: spec.dns_domain.clone(),
        dns_sub_domain: spec.dns_sub_domain.clone(),
        azure_resource_ids: spec.azure_resource_ids.clone(),
        gcp_connection_ids: spec.gcp_connection_ids.clone(),
        gcp_service_attachment_uris: spec.gcp_service_attachment_uris.clone(),
        authentication_scheme: spec.effective_scheme().map(|a| a.as_str().into()),
        state: Some(RemoteState::Done),
        ..Default::default()
    }
}

fn kinesis(region: &str) -> LinkSpec {
    LinkSpec {
        region: Some(region.into()),
        ..LinkSpec::new(Provider::Aws, Vendor::Kinesis)
    }
}

fn strings(items: &[&str]) -> Option<Vec<String>> {
    Some(items.iter().map(|s| (*s).to_owned()).collect())
}

#[test]
fn region_spellings_match_and_fingerprint_alike_but_are_sent_as_written() {
    let spellings = [
        "us-east-2",
        "us_east_2",
        "US_EAST_2",
        "US-EAST-2",
        "Us_East-2",
    ];
    for want in spellings {
        let spec = kinesis(want);
        for have in spellings {
            let remote = echo("r1", &kinesis(have));
            assert!(spec.matches(&remote), "{want} vs {have}");
            assert_eq!(spec.near_match(&remote), None);
            assert_eq!(spec.fingerprint(), kinesis(have).fingerprint());
        }
        assert!(!spec.matches(&echo("r1", &kinesis("us-east-1"))));
        assert!(!spec.matches(&echo("r1", &kinesis("us-east-22"))));
        assert_ne!(spec.fingerprint(), kinesis("us-east-1").fingerprint());
        // The create body is what the user wrote.
        assert!(spec.to_json().contains(&format!(r#""region":"{want}""#)));
        let link = DesiredLink::new(
            LinkKey::new(GroupId::parse("32b6e34b3d91647abb20e7b8").unwrap(), "k"),
            spec.clone(),
            Source {
                file: Path::new("m.yaml").into(),
                line: None,
            },
        );
        assert_eq!(link.spec.region.as_deref(), Some(want));
        assert_eq!(link.fingerprint, kinesis("us-east-2").fingerprint());
    }
    assert_eq!(canonical_region("US_EAST_2"), "us-east-2");
    assert!(matches!(canonical_region("eastus2"), Cow::Borrowed(_)));
    assert!(regions_equal("europe_west1", "EUROPE-WEST1"));
    assert!(!regions_equal("europe-west1", "europe-west"));
}

#[test]
fn fingerprints_of_canonical_specs_are_unchanged_so_ledgers_stay_valid() {
    // What the ledger already holds: the digest of the normal form's JSON.
    let plain = |spec: &LinkSpec| Fingerprint(Sha256::digest(spec.to_json().as_bytes()).into());
    let mut spec = msk();
    spec.authentication_scheme = None;
    assert_eq!(spec.fingerprint(), plain(&spec));
    let spec = kinesis("eu-west-1");
    assert_eq!(spec.fingerprint(), plain(&spec));
    assert_eq!(msk().fingerprint(), plain(&msk()));
}

#[test]
fn msk_without_a_scheme_is_atlas_default_sasl_scram() {
    let mut default = msk();
    default.authentication_scheme = None;
    let scram = LinkSpec {
        authentication_scheme: Some(AuthScheme::SaslScram),
        ..default.clone()
    };
    let with = |scheme: Option<&str>| RemoteConnection {
        authentication_scheme: scheme.map(str::to_owned),
        ..echo("r1", &default)
    };
    // No scheme asked: Atlas's default, which reads now return.
    assert!(default.matches(&with(Some("SASL_SCRAM"))));
    assert!(default.matches(&with(Some("sasl_scram"))));
    assert!(!default.matches(&with(Some("IAM"))));
    assert!(!default.matches(&with(Some("TLS"))));
    // A remote that does not report a scheme matches any.
    for spec in [&default, &scram, &msk()] {
        assert!(spec.matches(&with(None)));
    }
    // IAM asked: SASL_SCRAM is another connection to the same cluster.
    assert!(msk().matches(&with(Some("IAM"))));
    assert!(!msk().matches(&with(Some("SASL_SCRAM"))));
    assert_eq!(
        msk().near_match(&with(Some("SASL_SCRAM"))),
        Some(vec!["authenticationScheme"])
    );
    // The same connection, the same fingerprint; but the body sent omits what was omitted.
    assert_eq!(default.fingerprint(), scram.fingerprint());
    assert_ne!(default.fingerprint(), msk().fingerprint());
    assert!(!default.to_json().contains("authenticationScheme"));
    assert!(
        scram
            .to_json()
            .contains(r#""authenticationScheme":"SASL_SCRAM""#)
    );
}

#[test]
fn scheme_is_ignored_off_msk_as_atlas_ignores_it() {
    let spec = kinesis("us-east-1");
    let remote = RemoteConnection {
        authentication_scheme: Some("IAM".into()),
        ..echo("r1", &spec)
    };
    assert!(spec.matches(&remote));
    let with_scheme = LinkSpec {
        authentication_scheme: Some(AuthScheme::Tls),
        ..spec.clone()
    };
    assert!(with_scheme.matches(&remote));
    assert_eq!(with_scheme.fingerprint(), spec.fingerprint());
}

/// One row of the identity table: a spec, a remote sharing its identity but differing in
/// `fields`, and a remote with another identity (and the same difference).
struct Row {
    spec: LinkSpec,
    differ: fn(&mut RemoteConnection),
    fields: &'static [&'static str],
    other_identity: fn(&mut RemoteConnection),
}

fn rows() -> Vec<Row> {
    let aws = |vendor, region: &str, endpoint: &str| LinkSpec {
        region: Some(region.into()),
        service_endpoint_id: Some(endpoint.into()),
        ..LinkSpec::new(Provider::Aws, vendor)
    };
    let azure = |vendor, endpoint: &str| LinkSpec {
        region: Some("eastus2".into()),
        dns_domain: Some("ns.servicebus.windows.net".into()),
        service_endpoint_id: Some(endpoint.into()),
        ..LinkSpec::new(Provider::Azure, vendor)
    };
    vec![
        Row {
            spec: msk(),
            differ: |r| r.authentication_scheme = Some("TLS".into()),
            fields: &["authenticationScheme"],
            other_identity: |r| r.arn = Some("arn:aws:kafka:us-east-1:1:cluster/other/1".into()),
        },
        Row {
            spec: LinkSpec {
                dns_domain: Some("use1.abc.confluent.cloud".into()),
                dns_sub_domain: strings(&["use1-az1"]),
                ..aws(
                    Vendor::Confluent,
                    "us-east-1",
                    "com.amazonaws.vpce.us-east-1.vpce-svc-1",
                )
            },
            differ: |r| r.dns_domain = Some("use1.xyz.confluent.cloud".into()),
            fields: &["dnsDomain"],
            other_identity: |r| {
                r.service_endpoint_id = Some("com.amazonaws.vpce.us-east-1.vpce-svc-2".into())
            },
        },
        Row {
            spec: aws(Vendor::S3, "us-east-1", "com.amazonaws.us-east-1.s3"),
            differ: |r| r.region = Some("us-west-2".into()),
            fields: &["region"],
            other_identity: |r| r.service_endpoint_id = Some("com.amazonaws.us-west-2.s3".into()),
        },
        Row {
            spec: aws(
                Vendor::Lambda,
                "us-east-1",
                "com.amazonaws.us-east-1.lambda",
            ),
            differ: |r| r.region = Some("us-west-2".into()),
            fields: &["region"],
            other_identity: |r| {
                r.service_endpoint_id = Some("com.amazonaws.us-west-2.lambda".into())
            },
        },
        Row {
            spec: aws(
                Vendor::Kinesis,
                "us-east-1",
                "com.amazonaws.us-east-1.kinesis-streams",
            ),
            // The region as another tool spelled it: still the same identity.
            differ: |r| {
                r.region = Some("US_EAST_1".into());
                r.service_endpoint_id = None;
            },
            fields: &["serviceEndpointId"],
            other_identity: |r| r.region = Some("eu-west-1".into()),
        },
        Row {
            spec: azure(Vendor::Eventhub, "/subscriptions/s/namespaces/ns"),
            differ: |r| r.region = Some("westus".into()),
            fields: &["region"],
            other_identity: |r| {
                r.service_endpoint_id = Some("/subscriptions/s/namespaces/other".into())
            },
        },
        Row {
            spec: azure(
                Vendor::AzureBlobStorage,
                "/subscriptions/s/storageAccounts/lake",
            ),
            differ: |r| r.dns_domain = Some("other.blob.core.windows.net".into()),
            fields: &["dnsDomain"],
            other_identity: |r| {
                r.service_endpoint_id = Some("/subscriptions/s/storageAccounts/other".into())
            },
        },
        Row {
            spec: LinkSpec {
                region: Some("eastus2".into()),
                dns_domain: Some("eastus2.az1.confluent.cloud".into()),
                azure_resource_ids: strings(&["/pls/a", "/pls/b"]),
                ..LinkSpec::new(Provider::Azure, Vendor::Confluent)
            },
            // Shares `/pls/a` and the domain (spelled in upper case).
            differ: |r| {
                r.dns_domain = Some("EASTUS2.AZ1.CONFLUENT.CLOUD".into());
                r.azure_resource_ids = strings(&["/pls/a", "/pls/c"]);
            },
            fields: &["azureResourceIds"],
            other_identity: |r| {
                r.dns_domain = Some("eastus2.az9.confluent.cloud".into());
                r.azure_resource_ids = strings(&["/pls/c"]);
            },
        },
        Row {
            spec: LinkSpec {
                region: Some("us-central1".into()),
                dns_domain: Some("usc1.gcp1.confluent.cloud".into()),
                gcp_service_attachment_uris: strings(&["u/a", "u/b", "u/c"]),
                ..LinkSpec::new(Provider::Gcp, Vendor::Confluent)
            },
            // One URI in common is enough, whatever the domain.
            differ: |r| {
                r.dns_domain = Some("usc1.gcp2.confluent.cloud".into());
                r.gcp_service_attachment_uris = strings(&["u/c", "u/d", "u/e"]);
            },
            fields: &["dnsDomain", "gcpServiceAttachmentUris"],
            other_identity: |r| {
                r.dns_domain = Some("usc1.gcp2.confluent.cloud".into());
                r.gcp_service_attachment_uris = strings(&["u/d"]);
            },
        },
        Row {
            spec: LinkSpec {
                region: Some("us-central1".into()),
                dns_domain: Some("usc1.gcp1.confluent.cloud".into()),
                gcp_service_attachment_uris: strings(&["u/a"]),
                ..LinkSpec::new(Provider::Gcp, Vendor::Confluent)
            },
            // No URI in common, but the domain.
            differ: |r| r.gcp_service_attachment_uris = strings(&["u/z"]),
            fields: &["gcpServiceAttachmentUris"],
            other_identity: |r| r.dns_domain = Some("usc1.gcp9.confluent.cloud".into()),
        },
        Row {
            spec: LinkSpec {
                region: Some("europe-west1".into()),
                gcp_connection_ids: strings(&["1"]),
                ..LinkSpec::new(Provider::Gcp, Vendor::Pubsub)
            },
            differ: |r| r.gcp_connection_ids = strings(&["2"]),
            fields: &["gcpConnectionIds"],
            other_identity: |r| r.region = Some("europe-west4".into()),
        },
        Row {
            spec: aws(
                Vendor::Generic,
                "us-east-1",
                "com.amazonaws.vpce.us-east-1.vpce-svc-9",
            ),
            // An omitted vendor is GENERIC.
            differ: |r| {
                r.vendor = None;
                r.region = Some("us-east-2".into());
            },
            fields: &["region"],
            other_identity: |r| {
                r.service_endpoint_id = Some("com.amazonaws.vpce.us-east-1.vpce-svc-8".into())
            },
        },
    ]
}

#[test]
fn near_match_per_provider_and_vendor() {
    for row in rows() {
        let what = format!("{} {}", row.spec.provider, row.spec.vendor);
        let spec = &row.spec;
        assert!(spec.identity() != Identity::default(), "{what}");
        let exact = echo("r1", spec);
        assert!(spec.matches(&exact), "{what}");
        assert_eq!(
            spec.near_match(&exact),
            None,
            "{what}: a match is not a near-match"
        );

        let mut near = exact.clone();
        (row.differ)(&mut near);
        assert!(!spec.matches(&near), "{what}");
        assert_eq!(spec.near_match(&near), Some(row.fields.to_vec()), "{what}");
        // Atlas's case for provider and vendor does not matter.
        near.provider = near.provider.map(|p| p.to_ascii_lowercase());
        near.vendor = near.vendor.map(|v| v.to_ascii_lowercase());
        assert_eq!(spec.near_match(&near), Some(row.fields.to_vec()), "{what}");

        let mut other = near.clone();
        (row.other_identity)(&mut other);
        assert_eq!(spec.near_match(&other), None, "{what}: another far end");

        for state in [
            RemoteState::DeleteRequested,
            RemoteState::Deleting,
            RemoteState::Deleted,
        ] {
            let deleting = RemoteConnection {
                state: Some(state),
                ..near.clone()
            };
            assert_eq!(spec.near_match(&deleting), None, "{what}: being deleted");
            assert!(!spec.matches(&RemoteConnection {
                state: deleting.state.clone(),
                ..exact.clone()
            }));
        }

        let other_vendor = Vendor::ALL
            .into_iter()
            .find(|v| *v != spec.vendor && *v != Vendor::Generic)
            .expect("there are nine vendors");
        let kind = RemoteConnection {
            vendor: Some(other_vendor.as_str().into()),
            ..near.clone()
        };
        assert_eq!(spec.near_match(&kind), None, "{what}: another vendor");
        let provider = RemoteConnection {
            provider: Some(
                if spec.provider == Provider::Aws {
                    "GCP"
                } else {
                    "AWS"
                }
                .into(),
            ),
            ..near.clone()
        };
        assert_eq!(spec.near_match(&provider), None, "{what}: another provider");
    }
}

#[test]
fn every_accepted_combination_has_an_identity_and_the_table_is_covered() {
    let covered: Vec<(Provider, Vendor)> = rows()
        .iter()
        .map(|r| (r.spec.provider, r.spec.vendor))
        .collect();
    for provider in Provider::ALL {
        for &vendor in provider.vendors() {
            assert!(
                !identity_fields(provider, vendor).is_empty(),
                "{provider} {vendor}"
            );
            if vendor != Vendor::Generic {
                assert!(
                    covered.contains(&(provider, vendor)),
                    "no row for {provider} {vendor}"
                );
            }
        }
    }
}

#[test]
fn generic_without_an_endpoint_has_no_identity_and_is_never_a_near_match() {
    let spec = LinkSpec {
        region: Some("us-east4".into()),
        gcp_connection_ids: strings(&["1"]),
        ..LinkSpec::new(Provider::Gcp, Vendor::Generic)
    };
    assert_eq!(spec.identity(), Identity::default());
    let remote = RemoteConnection {
        gcp_connection_ids: strings(&["2"]),
        ..echo("r1", &spec)
    };
    assert!(!spec.matches(&remote));
    assert_eq!(spec.near_match(&remote), None);
    // A remote whose provider this build does not know has no identity either.
    let unknown = RemoteConnection {
        provider: Some("MARS".into()),
        ..echo("r1", &msk())
    };
    assert_eq!(unknown.identity(), Identity::default());
}

#[test]
fn fingerprint_ignores_list_order_and_dns_case() {
    let mut a = msk();
    a.vendor = Vendor::Confluent;
    a.dns_sub_domain = Some(vec!["use1-az1".into(), "USE1-AZ2".into()]);
    let mut b = a.clone();
    b.dns_sub_domain = Some(vec!["use1-az2".into(), "use1-az1".into()]);
    assert_eq!(a.fingerprint(), b.fingerprint());
    b.dns_sub_domain = Some(vec!["use1-az3".into(), "use1-az1".into()]);
    assert_ne!(a.fingerprint(), b.fingerprint());
}

fn named(name: &str, arn_tail: &str) -> DesiredLink {
    let group = GroupId::parse("32b6e34b3d91647abb20e7b8").expect("24 lower-case hex digits");
    let spec = LinkSpec {
        arn: Some(format!(
            "arn:aws:kafka:us-east-1:123456789012:cluster/{arn_tail}"
        )),
        ..msk()
    };
    let source = Source {
        file: Path::new("m.yaml").into(),
        line: None,
    };
    DesiredLink::new(LinkKey::new(group, name), spec, source)
}

#[test]
fn links_are_found_by_name_kept_in_name_order_and_compared_by_every_field() {
    let mut links: Links = [named("b", "1"), named("a", "2"), named("c", "3")]
        .into_iter()
        .collect();
    assert_eq!(links.keys().collect::<Vec<_>>(), ["a", "b", "c"]);
    assert_eq!(links.get("b"), Some(&named("b", "1")));
    assert!(links.contains_key("c") && !links.contains_key("d"));
    // The same name replaces; the link it replaced comes back.
    assert_eq!(links.insert(named("b", "9")), Some(named("b", "1")));
    assert_eq!(links.len(), 3);
    assert_eq!(links.get("b"), Some(&named("b", "9")));
    // Equality looks at the links, not only at their names.
    let before: Links = [named("a", "2"), named("b", "1"), named("c", "3")]
        .into_iter()
        .collect();
    assert_ne!(links, before);
    assert_eq!(links.remove("b"), Some(named("b", "9")));
    assert_eq!(links.remove("b"), None);
    assert_eq!(
        links.into_values().map(|l| l.key.name).collect::<Vec<_>>(),
        ["a", "c"]
    );
}
