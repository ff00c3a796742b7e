//! The configuration the package installs (deploy/config/agent.toml) stays true to the
//! binary: as shipped it changes nothing; uncommenting its `# key = value` lines gives
//! exactly the embedded defaults (so every value it shows is the real default); every
//! setting the defaults have is in it; and every `# example:` line is valid TOML of the
//! right shape. A new setting, or a changed default, fails here until the file says so.

use std::path::Path;

use interference::config::{toml_file, Config};
use interference::inventory::Mounts;

const SHIPPED: &str = include_str!("../../deploy/config/agent.toml");

fn mounts() -> Mounts {
    let mountinfo = "31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n\
                     41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
    Mounts::parse(mountinfo, Path::new("mountinfo")).expect("mountinfo")
}

/// `text` with its `# key = value` and `# [table]` lines uncommented: the defaults
/// (not the prose, not the examples).
fn uncomment_defaults(text: &str) -> String {
    let is_setting = |rest: &str| {
        rest.starts_with('[')
            || rest.split_once(" = ").is_some_and(|(key, _)| {
                !key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
            })
    };
    text.lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest) if is_setting(rest) => rest,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn defaults_uncommented() -> String {
    uncomment_defaults(SHIPPED)
}

#[test]
fn as_shipped_it_is_the_embedded_defaults() {
    let config = Config::parse(SHIPPED, Path::new("agent.toml"), &mounts()).expect("valid");
    assert_eq!(config, Config::default());
}

#[test]
fn its_commented_values_are_the_embedded_defaults() {
    let text = defaults_uncommented();
    let config = Config::parse(&text, Path::new("agent.toml"), &mounts())
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(config, Config::default(), "{text}");
}

#[test]
fn it_shows_every_setting_the_defaults_have() {
    let shown = toml_file::fields_set(&defaults_uncommented());
    let defaults = toml::Table::try_from(Config::default()).expect("defaults as TOML");
    let mut missing = Vec::new();
    leaves(&defaults, "", &mut missing, &shown);
    assert!(
        missing.is_empty(),
        "not in deploy/config/agent.toml: {missing:?}"
    );
}

fn leaves(table: &toml::Table, at: &str, missing: &mut Vec<String>, shown: &[String]) {
    for (key, value) in table {
        let path = if at.is_empty() {
            key.clone()
        } else {
            format!("{at}.{key}")
        };
        match value {
            toml::Value::Table(inner) if !inner.is_empty() => leaves(inner, &path, missing, shown),
            _ if !shown.contains(&path) => missing.push(path),
            _ => {}
        }
    }
}

#[test]
fn its_examples_have_the_right_shape() {
    let text = uncomment_defaults(&SHIPPED.replace("# example: ", ""));
    let config: Config = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(config.vms.len(), 1);
    assert_eq!(config.policy.migration.targets.len(), 1);
    assert!(config.fleet.controller.is_some());
}
