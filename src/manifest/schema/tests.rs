//! The schema's copies of walk.rs's private tables, checked against what the validator does.

use super::super::fields::LinkField;
use super::super::parse_str;
use super::{PROJECT_KEYS, READ_ONLY, TOP_KEYS, max_items};
use std::path::Path;

fn problems(text: &str) -> String {
    match parse_str(Path::new("t.yaml"), text) {
        Ok(_) => String::new(),
        Err(p) => p.to_string(),
    }
}

fn listing(keys: &[&str]) -> String {
    let keys: Vec<String> = keys.iter().map(|k| format!("`{k}`")).collect();
    format!("expected one of {}", keys.join(", "))
}

#[test]
fn top_level_and_project_keys_are_the_validators() {
    let top = problems("zzzzzzzzzzzz: 1\n");
    assert!(top.contains(&listing(&TOP_KEYS)), "{top}");
    let project =
        problems("projects:\n  - groupId: 32b6e34b3d91647abb20e7b8\n    zzzzzzzzzzzz: 1\n");
    assert!(project.contains(&listing(&PROJECT_KEYS)), "{project}");
}

#[test]
fn every_read_only_field_is_refused_in_a_link_and_in_defaults() {
    for key in READ_ONLY {
        let in_link = problems(&format!(
            "projects:\n  - groupId: 32b6e34b3d91647abb20e7b8\n    links:\n      - {{name: l1, provider: GCP, region: r, {key}: x}}\n"
        ));
        assert!(in_link.contains("set by Atlas"), "{key}: {in_link}");
        let in_defaults = problems(&format!(
            "projects:\n  - groupId: 32b6e34b3d91647abb20e7b8\n    defaults: {{{key}: x}}\n"
        ));
        assert!(in_defaults.contains("set by Atlas"), "{key}: {in_defaults}");
    }
}

#[test]
fn list_limits_are_the_validators() {
    for field in LinkField::ALL.into_iter().filter(|f| f.is_list()) {
        let n = max_items(field).unwrap_or(3) + 1;
        let items: Vec<String> = (0..n).map(|i| format!("i{i}")).collect();
        let text = format!(
            "projects:\n  - groupId: 32b6e34b3d91647abb20e7b8\n    defaults: {{{}: [{}]}}\n",
            field.key(),
            items.join(", ")
        );
        let found = problems(&text);
        assert_eq!(
            found.contains("at most"),
            max_items(field).is_some(),
            "{}: {found}",
            field.key()
        );
    }
}
