//! Unit tests of manifest parsing: problems and their lines, defaults, rules per vendor, the line scan.

use super::fields::LinkField;
use super::lines::{Frame, Seg, scan};
use super::walk::suggest;
use super::*;
use crate::model::{Provider, Vendor};
use std::path::Path;

const GID: &str = "32b6e34b3d91647abb20e7b8";

fn parse(text: &str) -> Result<FileManifest, Problems> {
    parse_str(Path::new("m.yaml"), text)
}

fn problems(text: &str) -> Vec<Problem> {
    match parse(text) {
        Ok(_) => panic!("expected problems for:\n{text}"),
        Err(p) => p.0,
    }
}

fn one_link(fields: &str) -> String {
    format!("projects:\n  - groupId: {GID}\n    links:\n      - name: l1\n{fields}")
}

#[test]
fn valid_msk_link_parses_with_its_line() {
    let text = one_link(
        "        provider: aws\n        vendor: msk\n        arn: arn:aws:kafka:us-east-1:123456789012:cluster/a/1\n",
    );
    let m = parse(&text).unwrap();
    let link = &m.projects[0].links[0].link;
    assert_eq!(link.spec.provider, Provider::Aws);
    assert_eq!(link.spec.vendor, Vendor::Msk);
    assert_eq!(link.source.line, Some(4));
    assert_eq!(m.projects[0].line, Some(2));
}

#[test]
fn problem_line_column_and_display() {
    let text =
        one_link("        provider: AWS\n        vendor: MSK\n        arn: arn:aws:s3:::bucket\n");
    let p = problems(&text);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].path, "projects[0].links[0].arn");
    assert_eq!(p[0].link.as_deref(), Some("l1"));
    assert_eq!((p[0].line, p[0].column), (Some(7), Some(9)));
    let shown = p[0].to_string();
    assert!(
        shown.starts_with("m.yaml:7:9: projects[0].links[0].arn (link `l1`): `arn:aws:s3:::bucket` must start with `arn:aws:kafka`"),
        "{shown}"
    );
}

#[test]
fn every_problem_is_reported() {
    let text = format!(
        "projects:\n  - groupId: {GID}\n    links:\n      - name: a\n        provider: MARS\n      - name: b\n        provider: AWS\n        vendor: MSK\n        region: us-east-1\n        dnsdomain: x.example.com\n"
    );
    let p = problems(&text);
    let paths: Vec<&str> = p.iter().map(|p| p.path.as_str()).collect();
    assert!(
        paths.contains(&"projects[0].links[0].provider"),
        "{paths:?}"
    );
    assert!(
        paths.contains(&"projects[0].links[1].dnsdomain"),
        "{paths:?}"
    );
    assert!(paths.contains(&"projects[0].links[1].region"), "{paths:?}");
    assert!(paths.contains(&"projects[0].links[1].arn"), "{paths:?}");
    let typo = p.iter().find(|p| p.path.ends_with("dnsdomain")).unwrap();
    assert!(
        typo.message.contains("did you mean `dnsDomain`?"),
        "{}",
        typo.message
    );
    assert_eq!(typo.line, Some(10));
}

#[test]
fn defaults_merge_under_links_and_links_win() {
    let text = format!(
        "projects:\n  - groupId: {GID}\n    defaults: {{provider: AWS, region: us-east-1, serviceEndpointId: com.amazonaws.us-east-1.s3}}\n    links:\n      - name: s3\n        vendor: S3\n      - name: kin\n        vendor: KINESIS\n        region: eu-west-1\n        serviceEndpointId: com.amazonaws.eu-west-1.kinesis\n      - name: msk\n        vendor: MSK\n        region: null\n        serviceEndpointId: null\n        arn: arn:aws:kafka:us-east-1:1:cluster/x/1\n"
    );
    let m = parse(&text).unwrap();
    let links = &m.projects[0].links;
    assert_eq!(links[0].link.spec.region.as_deref(), Some("us-east-1"));
    assert_eq!(links[1].link.spec.region.as_deref(), Some("eu-west-1"));
    assert_eq!(links[2].link.spec.region, None);
}

#[test]
fn inherited_forbidden_field_says_so() {
    let text = format!(
        "projects:\n  - groupId: {GID}\n    defaults: {{provider: AWS, region: us-east-1}}\n    links:\n      - name: msk\n        vendor: MSK\n        arn: arn:aws:kafka:us-east-1:1:cluster/x/1\n"
    );
    let p = problems(&text);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].path, "projects[0].links[0].region");
    assert!(p[0].message.contains("defaults"));
    // The field is absent from the link: the link's line, no column.
    assert_eq!((p[0].line, p[0].column), (Some(5), None));
}

#[test]
fn upper_case_group_id_is_explained() {
    let text = "projects:\n  - groupId: 32B6E34B3D91647ABB20E7B8\n    links: []\n";
    let p = problems(text);
    assert!(p[0].message.contains("upper-case"), "{}", p[0].message);
    assert!(p[0].message.contains(GID));
}

#[test]
fn wrong_types_are_reported_with_paths() {
    let text = one_link(
        "        provider: GCP\n        vendor: PUBSUB\n        region: 42\n        gcpConnectionIds: abc\n",
    );
    let p = problems(&text);
    let region = p.iter().find(|p| p.path.ends_with(".region")).unwrap();
    assert!(
        region.message.contains("a number `42`"),
        "{}",
        region.message
    );
    let ids = p
        .iter()
        .find(|p| p.path.ends_with(".gcpConnectionIds"))
        .unwrap();
    assert!(ids.message.contains("write `[abc]`"), "{}", ids.message);
}

#[test]
fn gcp_lists_are_limited_and_unique() {
    let text = one_link(
        "        provider: GCP\n        vendor: CONFLUENT\n        region: us-central1\n        dnsDomain: d.example.com\n        gcpServiceAttachmentUris: [a, b]\n        gcpConnectionIds: [x, y, x]\n",
    );
    let p = problems(&text);
    assert!(
        p.iter().any(|p| p.path.ends_with("gcpConnectionIds[2]")),
        "{p:?}"
    );
    assert!(p.iter().any(|p| p.message.contains("1 or 3")), "{p:?}");
}

#[test]
fn read_only_fields_are_refused() {
    let text = one_link("        provider: GCP\n        region: r\n        state: DONE\n");
    let p = problems(&text);
    assert!(p[0].message.contains("set by Atlas"), "{p:?}");
    assert_eq!(p[0].path, "projects[0].links[0].state");
}

#[test]
fn same_spec_twice_is_refused() {
    let text = format!(
        "projects:\n  - groupId: {GID}\n    links:\n      - name: a\n        provider: GCP\n        region: r\n      - name: b\n        provider: gcp\n        vendor: generic\n        region: r\n"
    );
    let p = problems(&text);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].message.contains("same connection as link `a`"),
        "{}",
        p[0].message
    );
    assert_eq!(p[0].line, Some(7));
}

#[test]
fn multi_document_lines_are_per_document() {
    let text = format!(
        "projects: []\n---\n# second\nprojects:\n  - groupId: {GID}\n    links:\n      - name: a\n        provider: GCP\n        region: [r]\n"
    );
    let p = problems(&text);
    assert_eq!(p[0].line, Some(9), "{p:?}");
}

#[test]
fn syntax_errors_have_line_and_column() {
    let p = problems("projects:\n  - groupId: [unclosed\n");
    assert!(p[0].line.is_some() && p[0].column.is_some(), "{p:?}");
    assert!(p[0].message.starts_with("invalid YAML"));
}

#[test]
fn a_file_that_declares_no_projects_list_is_refused_and_an_empty_list_is_fine() {
    for text in [
        "",
        " \n\n",
        "# nothing\n",
        "---\n---\n# nothing\n",
        "projects:\n",
        "{}\n",
    ] {
        let p = problems(text);
        assert_eq!(p.len(), 1, "{text:?}: {p:?}");
        assert!(p[0].message.contains("`projects: []`"), "{p:?}");
        assert_eq!(p[0].file, Path::new("m.yaml"), "{p:?}");
    }
    assert!(parse("projects: []\n").unwrap().projects.is_empty());
    assert!(
        parse("---\nprojects: []\n---\n# nothing\n")
            .unwrap()
            .projects
            .is_empty()
    );
    // Another problem is reported alone: the file is refused either way.
    let p = problems("project: []\n");
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].message.contains("projects"), "{p:?}");
}

#[test]
fn scan_gives_up_rather_than_guess() {
    // A multi-line plain scalar: the scan must not attribute later keys to wrong paths.
    let text = "a:\n  b: one\n    two\n  c: x\n";
    let mut seen = Vec::new();
    scan(text, |_, frames, line, _| seen.push((frames.len(), line)));
    assert_eq!(seen, vec![(1, 1), (2, 2)]);
}

#[test]
fn scan_indexes_indentless_sequences() {
    let text = "projects:\n- groupId: x\n  links:\n  - name: a\n  - name: b\n";
    let mut links = Vec::new();
    scan(text, |_, frames, line, _| {
        if let [
            _,
            _,
            _,
            Frame {
                seg: Seg::Index(i), ..
            },
        ] = frames
        {
            links.push((*i, line));
        }
    });
    assert_eq!(links, vec![(0, 4), (1, 5)]);
}

#[test]
fn authentication_scheme_only_on_msk() {
    let text = one_link(
        "        provider: AWS\n        vendor: S3\n        region: us-east-1\n        serviceEndpointId: com.amazonaws.us-east-1.s3\n        authenticationScheme: IAM\n",
    );
    let p = problems(&text);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].path, "projects[0].links[0].authenticationScheme");
    assert_eq!(p[0].link.as_deref(), Some("l1"));
    assert_eq!(p[0].line, Some(9));
    let shown = p[0].to_string();
    assert!(shown.contains("must not be set on AWS S3 links"), "{shown}");
    assert!(shown.contains("only to MSK"), "{shown}");
    assert!(shown.contains("never match"), "{shown}");
    assert!(shown.contains("remove it"), "{shown}");
    // On MSK every scheme is fine, in any case.
    for scheme in ["IAM", "tls", "Sasl_Scram"] {
        let text = one_link(&format!(
            "        provider: AWS\n        vendor: MSK\n        arn: arn:aws:kafka:us-east-1:1:cluster/a/1\n        authenticationScheme: {scheme}\n"
        ));
        assert!(parse(&text).is_ok(), "{scheme}");
    }
}

#[test]
fn aws_confluent_needs_no_domain_and_kinesis_only_a_region() {
    let enterprise = one_link(
        "        provider: AWS\n        vendor: CONFLUENT\n        region: us-east-1\n        serviceEndpointId: com.amazonaws.vpce.us-east-1.vpce-svc-1\n        dnsSubDomain: []\n",
    );
    let m = parse(&enterprise).unwrap();
    assert_eq!(m.projects[0].links[0].link.spec.dns_domain, None);
    // Still needs its subdomains, empty or not.
    let p = problems(&enterprise.replace("        dnsSubDomain: []\n", ""));
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].path.ends_with(".dnsSubDomain"), "{p:?}");

    let kinesis =
        one_link("        provider: AWS\n        vendor: KINESIS\n        region: us-east-1\n");
    assert!(parse(&kinesis).is_ok());
    let p = problems(&one_link(
        "        provider: AWS\n        vendor: KINESIS\n",
    ));
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].message
            .contains("`region` is required for AWS KINESIS"),
        "{p:?}"
    );
    // S3 and LAMBDA still need their endpoint.
    let p = problems(&one_link(
        "        provider: AWS\n        vendor: LAMBDA\n        region: us-east-1\n",
    ));
    assert!(p[0].path.ends_with(".serviceEndpointId"), "{p:?}");
}

#[test]
fn a_region_spelled_another_way_is_the_same_connection() {
    let text = format!(
        "projects:\n  - groupId: {GID}\n    links:\n      - name: a\n        provider: AWS\n        vendor: KINESIS\n        region: us-east-1\n      - name: b\n        provider: AWS\n        vendor: KINESIS\n        region: US_EAST_1\n"
    );
    let p = problems(&text);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].message.contains("same connection as link `a`"),
        "{p:?}"
    );
}

#[test]
fn suggestions_cover_case_and_typos() {
    assert_eq!(suggest("dnsdomain", &LinkField::KEYS), Some("dnsDomain"));
    assert_eq!(suggest("regoin", &LinkField::KEYS), Some("region"));
    assert_eq!(suggest("zzzzzz", &LinkField::KEYS), None);
}

/// A daemon's refresh meets a file that became a link out of the folder, or a FIFO: it reports it by
/// name without reading it (or blocking), and the file's last good version stays in use.
#[test]
fn a_refresh_refuses_a_file_turned_into_a_link_out_or_a_fifo_and_keeps_its_last_good_version() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("manifests");
    std::fs::create_dir(&manifests).unwrap();
    let a = manifests.join("a.yaml");
    std::fs::write(
        &a,
        one_link("        provider: GCP\n        region: us-east1\n"),
    )
    .unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "MARKER-refresh-secret\n").unwrap();
    let paths = vec![manifests.clone()];
    let limits = ReadLimits::new(1 << 20).with_credentials_dir(None);
    let mut set = ManifestSet::load_with(&paths, limits).unwrap();
    assert_eq!(set.desired().link_count(), 1);

    std::fs::remove_file(&a).unwrap();
    std::os::unix::fs::symlink(&secret, &a).unwrap();
    let r = set.refresh(&paths);
    assert_eq!(r.invalid_files, 1, "{:?}", r.problems);
    assert_eq!(r.problems.len(), 1);
    assert_eq!(r.problems[0].file, a);
    assert!(!r.problems[0].to_string().contains("MARKER"));
    assert!(!r.changed);
    assert_eq!(set.desired().link_count(), 1);

    std::fs::remove_file(&a).unwrap();
    let st = std::process::Command::new("mkfifo")
        .arg(&a)
        .status()
        .unwrap();
    assert!(st.success());
    let r = set.refresh(&paths);
    assert_eq!(r.invalid_files, 1);
    assert!(r.problems[0].message.contains("FIFO"), "{}", r.problems[0]);
    assert_eq!(set.desired().link_count(), 1);
}
