//! The invalid-manifest corpus: each file in tests/data/invalid breaks one rule and says, in its
//! first line (`# expect: PATH | LINK-or-dash | MESSAGE-PART`), which problem it must produce.
//! Each file in tests/data/valid, and the example manifests in config/manifests, must load clean.

use atlas_linkd::manifest;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn every_invalid_manifest_is_refused_with_file_path_and_link() {
    let dir = root().join("tests/data/invalid");
    let files = manifest::discover(&[dir]).unwrap();
    assert!(files.len() >= 30, "only {} invalid manifests", files.len());
    let mut failures = Vec::new();
    for file in files {
        let result = std::panic::catch_unwind(|| check_one(&file));
        if let Err(e) = result {
            failures.push(format!(
                "{}: {:?}",
                file.display(),
                e.downcast_ref::<String>()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn check_one(file: &Path) {
    {
        let text = std::fs::read_to_string(file).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} lacks its `# expect:` line", file.display()));
        let parts: Vec<&str> = expect.split(" | ").collect();
        let [path, link, message] = parts[..] else {
            panic!("{}: malformed expect line", file.display());
        };
        let link = (link != "-").then_some(link);
        let problems = match manifest::parse_file(file) {
            Ok(_) => panic!("{} was accepted", file.display()),
            Err(p) => p,
        };
        let found = problems
            .0
            .iter()
            .find(|p| p.path == path && p.link.as_deref() == link && p.message.contains(message));
        let Some(problem) = found else {
            panic!(
                "{}: no problem at `{path}` for link {link:?} saying `{message}`; got:\n{problems}",
                file.display()
            );
        };
        assert_eq!(problem.file, file);
        // Only whole-document problems (empty path) may lack a line.
        assert!(
            problem.line.is_some() || path.is_empty(),
            "{}: no line in {problem}",
            file.display()
        );
        let shown = problem.to_string();
        assert!(shown.starts_with(&file.display().to_string()), "{shown}");
        if !path.is_empty() {
            assert!(shown.contains(path), "{shown}");
        }
        // The same file through `load` gives the same problem.
        let via_load = manifest::load(&[file.to_path_buf()]).unwrap_err();
        assert!(
            via_load.0.contains(problem),
            "{}: load differs:\n{via_load}",
            file.display()
        );
    }
}

#[test]
fn every_valid_manifest_loads_clean() {
    let dir = root().join("tests/data/valid");
    let files = manifest::discover(&[dir]).unwrap();
    assert!(files.len() >= 3, "only {} valid manifests", files.len());
    for file in files {
        if let Err(p) = manifest::parse_file(&file) {
            panic!("{} was refused:\n{p}", file.display());
        }
    }
}

#[test]
fn todays_rules_accept_confluent_enterprise_and_kinesis_with_only_a_region() {
    use atlas_linkd::model::Vendor;
    let state =
        manifest::load(&[root().join("tests/data/valid")]).unwrap_or_else(|p| panic!("{p}"));
    let link = |name: &str| {
        state
            .links()
            .find(|l| l.key.name == name)
            .unwrap_or_else(|| panic!("no link `{name}`"))
    };
    // Created without a domain: the body sent has none.
    let enterprise = link("enterprise");
    assert_eq!(enterprise.spec.vendor, Vendor::Confluent);
    assert_eq!(enterprise.spec.dns_domain, None);
    assert!(!enterprise.spec.to_json().contains("dnsDomain"));
    assert!(enterprise.spec.to_json().contains(r#""dnsSubDomain":[]"#));
    let kinesis = link("region-only");
    assert_eq!(kinesis.spec.region.as_deref(), Some("us-east-1"));
    assert_eq!(kinesis.spec.service_endpoint_id, None);
    assert!(link("with-endpoint").spec.service_endpoint_id.is_some());
    // MSK's default scheme is left out of the body, as the manifest left it out.
    assert!(
        !link("default-scheme")
            .spec
            .to_json()
            .contains("authenticationScheme")
    );
}

#[test]
fn lines_point_at_the_offending_key() {
    let file = root().join("tests/data/invalid/msk-region-forbidden.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    let problems = manifest::parse_file(&file).unwrap_err();
    let p = &problems.0[0];
    let line = text.lines().nth(p.line.unwrap() - 1).unwrap();
    assert!(
        line.trim_start().starts_with("region:"),
        "line {:?}: {line}",
        p.line
    );
}

#[test]
fn example_manifests_load_clean() {
    let state =
        manifest::load(&[root().join("config/manifests")]).unwrap_or_else(|p| panic!("{p}"));
    assert!(
        (20..=40).contains(&state.link_count()),
        "{} links",
        state.link_count()
    );
    assert_eq!(state.projects.len(), 5);
    // payments-prod is split across two files.
    let prod = state
        .projects
        .values()
        .find(|p| p.label.as_deref() == Some("payments-prod"))
        .unwrap();
    assert!(prod.links.contains_key("orders-msk") && prod.links.contains_key("archive-s3"));
    // Every provider/vendor combination of the reference appears.
    use atlas_linkd::model::Provider;
    for provider in Provider::ALL {
        for vendor in provider.vendors() {
            assert!(
                state
                    .links()
                    .any(|l| l.spec.provider == provider && l.spec.vendor == *vendor),
                "no {provider} {vendor} example"
            );
        }
    }
    assert!(state.links().all(|l| l.source.line.is_some()));
    // Today's rules have their examples: Confluent Enterprise without a domain, Kinesis with a
    // region alone.
    assert!(state.links().any(|l| l.spec.provider == Provider::Aws
        && l.spec.vendor == atlas_linkd::model::Vendor::Confluent
        && l.spec.dns_domain.is_none()));
    assert!(
        state
            .links()
            .any(|l| l.spec.vendor == atlas_linkd::model::Vendor::Kinesis
                && l.spec.service_endpoint_id.is_none())
    );
}

#[test]
fn problems_across_files_are_all_reported() {
    let dir = tempfile::tempdir().unwrap();
    let a = "projects:\n  - groupId: 32b6e34b3d91647abb20e7b8\n    name: one\n    links:\n      - name: x\n        provider: GCP\n        region: r\n";
    let b = "projects:\n  - groupId: 32b6e34b3d91647abb20e7b8\n    name: two\n    links:\n      - name: x\n        provider: GCP\n        region: s\n";
    let c = "projects:\n  - groupId: nope\n";
    std::fs::write(dir.path().join("a.yaml"), a).unwrap();
    std::fs::write(dir.path().join("b.yml"), b).unwrap();
    std::fs::write(dir.path().join("c.yaml"), c).unwrap();
    std::fs::write(dir.path().join(".hidden.yaml"), "garbage: [").unwrap();
    std::fs::write(dir.path().join("notes.txt"), "garbage: [").unwrap();
    let problems = manifest::load(&[dir.path().to_path_buf()]).unwrap_err();
    let shown = problems.to_string();
    assert_eq!(problems.len(), 3, "{shown}");
    assert!(shown.contains("use one name"), "{shown}");
    assert!(
        shown.contains("link name used twice") && shown.contains("a.yaml:5"),
        "{shown}"
    );
    assert!(shown.contains("c.yaml"), "{shown}");
}

#[test]
fn missing_path_is_a_problem() {
    let missing = Path::new("/nonexistent/manifests");
    let problems = manifest::discover(&[missing.to_path_buf()]).unwrap_err();
    assert_eq!(problems.0[0].file, missing);
}
