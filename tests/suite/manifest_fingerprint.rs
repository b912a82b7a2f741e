//! Property tests: a link's fingerprint, parsed from YAML, ignores key order, the case of provider
//! and vendor, the spelling of the region (case, `-` or `_`), and the order of set-like lists, and
//! changes whenever a meaningful field changes.

use atlas_linkd::manifest;
use atlas_linkd::model::Fingerprint;
use proptest::prelude::*;
use std::path::Path;

const GID: &str = "32b6e34b3d91647abb20e7b8";

/// An AWS CONFLUENT link: the vendor with the most fields, lists included.
#[derive(Debug, Clone)]
struct Link {
    region: String,
    endpoint: String,
    domain: String,
    subdomains: Vec<String>,
}

fn arb_link() -> impl Strategy<Value = Link> {
    (
        "[a-z]{2}-[a-z]{4}-[1-3]",
        "com\\.amazonaws\\.vpce\\.[a-z0-9]{6}",
        "[a-z0-9]{5}\\.confluent\\.cloud",
        proptest::collection::btree_set("[a-z]{3}[0-9]-az[1-6]", 0..4),
    )
        .prop_map(|(region, endpoint, domain, subs)| Link {
            region,
            endpoint,
            domain,
            subdomains: subs.into_iter().collect(),
        })
}

fn case(s: &str, upper: bool) -> String {
    if upper {
        s.to_ascii_uppercase()
    } else {
        s.to_ascii_lowercase()
    }
}

/// The region as another tool may spell it: upper case, `_` for `-`, or both.
fn respell(region: &str, style: (bool, bool)) -> String {
    let r = case(region, style.0);
    if style.1 { r.replace('-', "_") } else { r }
}

/// Renders the link with its keys in the order given by `order` (a permutation of 0..6).
fn render(l: &Link, order: &[usize], upper: (bool, bool), subs: &[String]) -> String {
    render_region(l, order, upper, subs, &l.region)
}

fn render_region(
    l: &Link,
    order: &[usize],
    upper: (bool, bool),
    subs: &[String],
    region: &str,
) -> String {
    let fields = [
        format!("provider: {}", case("aws", upper.0)),
        format!("vendor: {}", case("Confluent", upper.1)),
        format!("region: {region}"),
        format!("serviceEndpointId: {}", l.endpoint),
        format!("dnsDomain: {}", l.domain),
        format!("dnsSubDomain: [{}]", subs.join(", ")),
    ];
    let mut out = format!("projects:\n  - groupId: {GID}\n    links:\n      - name: link\n");
    for &i in order {
        out.push_str("        ");
        out.push_str(&fields[i]);
        out.push('\n');
    }
    out
}

fn fingerprint(yaml: &str) -> Fingerprint {
    let m =
        manifest::parse_str(Path::new("p.yaml"), yaml).unwrap_or_else(|p| panic!("{p}\n{yaml}"));
    m.projects[0].links[0].link.fingerprint
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn stable_under_order_and_case(
        l in arb_link(),
        order in Just((0..6).collect::<Vec<usize>>()).prop_shuffle(),
        upper in any::<(bool, bool)>(),
        subs_order in any::<prop::sample::Index>(),
        region_style in any::<(bool, bool)>(),
    ) {
        let base = fingerprint(&render(&l, &[0, 1, 2, 3, 4, 5], (true, true), &l.subdomains));
        let mut subs = l.subdomains.clone();
        if !subs.is_empty() {
            let k = subs_order.index(subs.len());
            subs.rotate_left(k);
            subs.reverse();
        }
        let region = respell(&l.region, region_style);
        let other = fingerprint(&render_region(&l, &order, upper, &subs, &region));
        prop_assert_eq!(base, other);
    }

    #[test]
    fn changes_with_any_meaningful_field(l in arb_link(), which in 0usize..4) {
        let base = fingerprint(&render(&l, &[0, 1, 2, 3, 4, 5], (true, true), &l.subdomains));
        let mut m = l.clone();
        match which {
            0 => m.region.push('x'),
            1 => m.endpoint.push('x'),
            2 => m.domain = format!("x{}", m.domain),
            _ => m.subdomains.push("zzz9-az9".into()),
        }
        let other = fingerprint(&render(&m, &[0, 1, 2, 3, 4, 5], (true, true), &m.subdomains));
        prop_assert_ne!(base, other);
    }
}

#[test]
fn vendor_and_provider_change_the_fingerprint() {
    let s3 = "projects:\n  - groupId: 32b6e34b3d91647abb20e7b8\n    links:\n      - name: a\n        provider: AWS\n        vendor: S3\n        region: r\n        serviceEndpointId: e\n";
    let kinesis = s3.replace("S3", "KINESIS");
    let generic = s3.replace("        vendor: S3\n", "");
    let fps = [
        fingerprint(s3),
        fingerprint(&kinesis),
        fingerprint(&generic),
    ];
    assert_ne!(fps[0], fps[1]);
    assert_ne!(fps[0], fps[2]);
    assert_ne!(fps[1], fps[2]);
    let explicit_generic = s3.replace("S3", "generic");
    assert_eq!(fingerprint(&explicit_generic), fps[2]);
}
