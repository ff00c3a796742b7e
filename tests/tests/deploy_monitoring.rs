//! The Grafana dashboard and Prometheus alerts in deploy/ (deploy/README.md) against the
//! agent's real metrics. A panel or an alert that names a metric or a label the agent
//! does not export is not an error anywhere else: the panel stays empty and the alert
//! never fires, silently. So the oracles are the official parser (`promtool check
//! rules`, `promtool test rules`, and the dashboard's queries checked as recording
//! rules) and the names the agent exports: the exporter's golden file
//! (interference-user/src/export/prometheus/testdata/golden.prom, its labels too) and
//! the metric tables of docs/samples.md.
//!
//! promtool: on PATH or named by $PROMTOOL (scripts/setup.sh installs it).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

const DASHBOARD: &str = "deploy/grafana/interference-agent.json";
const ALERTS: &str = "deploy/prometheus/interference-alerts.yml";
const ALERT_TESTS: &str = "deploy/prometheus/interference-alerts.test.yml";
const GOLDEN: &str = "interference-user/src/export/prometheus/testdata/golden.prom";
const SAMPLES_MD: &str = "docs/samples.md";
/// Labels the scrape of node_exporter adds to every series of the textfile.
const TARGET_LABELS: &[&str] = &["instance", "job"];

#[test]
#[ignore = "needs promtool (scripts/setup.sh installs it)"]
fn promtool_checks_the_alert_rules() {
    promtool(&["check", "rules", &path(ALERTS)]);
}

#[test]
#[ignore = "needs promtool (scripts/setup.sh installs it)"]
fn promtool_unit_tests_of_the_alerts_pass_and_cover_every_alert() {
    promtool(&["test", "rules", &path(ALERT_TESTS)]);
    let tests = read(ALERT_TESTS);
    for (alert, _) in alert_exprs() {
        assert!(
            tests.contains(&format!("alertname: {alert}\n")),
            "{ALERT_TESTS} has no test of {alert}"
        );
    }
}

#[test]
#[ignore = "needs promtool (scripts/setup.sh installs it)"]
fn dashboard_and_alerts_use_only_metrics_and_labels_the_agent_exports() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&read(DASHBOARD)).expect("the dashboard is not JSON");
    assert_eq!(dashboard["schemaVersion"], 39);
    assert_eq!(dashboard["__inputs"][0]["name"], "DS_PROMETHEUS");

    // (where, expression) of every query, panel by panel, then every alert.
    let mut exprs = Vec::new();
    let mut ids = BTreeSet::new();
    for p in dashboard["panels"].as_array().expect("panels") {
        let title = p["title"].as_str().unwrap_or_default();
        let id = p["id"].as_u64().expect("a panel without a numeric id");
        let at = format!("panel {id} {title:?}");
        assert!(!title.is_empty(), "panel {id} has no title");
        assert!(ids.insert(id), "{at}: id {id} is not unique");
        assert!(
            p["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{at} has no description"
        );
        assert_eq!(
            p["datasource"]["uid"], "${DS_PROMETHEUS}",
            "{at}: datasource"
        );
        let targets = p["targets"].as_array().expect("a panel without targets");
        assert!(!targets.is_empty(), "{at} has no query");
        for t in targets {
            assert_eq!(
                t["datasource"]["uid"], "${DS_PROMETHEUS}",
                "{at}: datasource"
            );
            exprs.push((at.clone(), t["expr"].as_str().expect("expr").to_owned()));
        }
    }
    for v in dashboard["templating"]["list"]
        .as_array()
        .expect("templating")
    {
        let at = format!("variable {}", v["name"]);
        assert_eq!(
            v["datasource"]["uid"], "${DS_PROMETHEUS}",
            "{at}: datasource"
        );
        exprs.push((at, v["query"]["query"].as_str().expect("query").to_owned()));
    }
    let names: BTreeSet<&str> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["instance", "vm"]),
        "template variables"
    );
    promtool_parses(&exprs);
    exprs.extend(
        alert_exprs()
            .into_iter()
            .map(|(a, e)| (format!("alert {a}"), e)),
    );

    let oracle = oracle();
    let mut errors = Vec::new();
    for (at, expr) in &exprs {
        check_expr(&oracle, at, expr, &mut errors);
    }
    assert!(
        errors.is_empty(),
        "not exported by the agent (oracle: {GOLDEN}, {SAMPLES_MD}):\n{}",
        errors.join("\n")
    );
}

/// A metric family the agent exports: its labels (without `le`) and whether it is a
/// histogram (so `_bucket`, `_sum`, `_count` series exist).
struct Family {
    labels: BTreeSet<String>,
    histogram: bool,
}

/// golden.prom's families with their labels, then docs/samples.md's tables for the
/// families golden.prom does not have.
fn oracle() -> BTreeMap<String, Family> {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    let golden = read(GOLDEN);
    for line in golden.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            families.insert(
                name.into(),
                Family {
                    labels: BTreeSet::new(),
                    histogram: kind == "histogram",
                },
            );
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            let (family, _) = resolve(&families, &line[..end])
                .unwrap_or_else(|| panic!("{GOLDEN}: a sample without # TYPE: {line}"));
            let labels = line[end..]
                .strip_prefix('{')
                .map(label_names)
                .unwrap_or_default();
            let f = families.get_mut(&family).unwrap();
            f.labels.extend(labels.into_iter().filter(|l| l != "le"));
        }
    }
    assert!(families.len() > 20, "{GOLDEN}: too few families");
    for row in read(SAMPLES_MD).lines() {
        let cells: Vec<&str> = row.split('|').collect();
        if !row.starts_with("| `interference_") || cells.len() < 5 {
            continue;
        }
        let labels = backticked(&without_parentheses(cells[3]));
        for name in backticked(cells[1]) {
            families.entry(name).or_insert_with(|| Family {
                labels: labels.iter().cloned().collect(),
                histogram: cells[2].contains("histogram"),
            });
        }
    }
    families
}

/// The family a series name belongs to, and whether it is a histogram's `_bucket`.
fn resolve(families: &BTreeMap<String, Family>, series: &str) -> Option<(String, bool)> {
    if families.contains_key(series) {
        return Some((series.into(), false));
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        let base = series.strip_suffix(suffix)?;
        families
            .get(base)
            .filter(|f| f.histogram)
            .map(|_| (base.into(), *suffix == "_bucket"))
    })
}

/// Every `interference_*` name of `expr` must be exported, and every label it uses (in
/// a matcher, `by`/`without`/`on`/`ignoring`/`group_*`, `label_values`) must be a label
/// of the metric (matchers) or of one of the metrics it applies to (the clauses).
fn check_expr(oracle: &BTreeMap<String, Family>, at: &str, expr: &str, errors: &mut Vec<String>) {
    let toks = tokens(expr);
    let group_end = |open: usize| {
        let mut depth = 0;
        (open..toks.len())
            .find(|&j| {
                depth += i32::from(toks[j] == "(") - i32::from(toks[j] == ")");
                depth == 0
            })
            .unwrap_or(toks.len())
    };
    let is_metric = |t: &str| t.starts_with("interference_") || t.starts_with("node_");
    let metrics_in = |range: std::ops::Range<usize>| -> Vec<String> {
        toks[range]
            .iter()
            .filter(|t| is_metric(t.as_str()))
            .cloned()
            .collect()
    };
    let labels_of = |metrics: &[String]| -> Option<BTreeSet<String>> {
        let mut known = None;
        for m in metrics {
            if let Some((family, bucket)) = resolve(oracle, m) {
                let set = known.get_or_insert_with(BTreeSet::new);
                set.extend(oracle[&family].labels.iter().cloned());
                if bucket {
                    set.insert("le".to_owned());
                }
            }
        }
        known
    };
    let check = |label: &str, metrics: &[String], what: &str| {
        let known = labels_of(metrics)?;
        (!known.contains(label) && !TARGET_LABELS.contains(&label)).then(|| {
            format!("{at}: label {label:?} ({what}) is not a label of {metrics:?} (they have {known:?})")
        })
    };
    let mut i = 0;
    while i < toks.len() {
        let t = toks[i].as_str();
        let next_is_paren = toks.get(i + 1).is_some_and(|n| n == "(");
        if is_metric(t) {
            if t.starts_with("interference_") && resolve(oracle, t).is_none() {
                errors.push(format!("{at}: {t} is not a metric the agent exports"));
            }
            if toks.get(i + 1).is_some_and(|n| n == "{") {
                let end = (i + 1..toks.len()).find(|&j| toks[j] == "}").unwrap();
                for label in &toks[i + 2..end] {
                    errors.extend(check(label, &[t.to_owned()], "matcher"));
                }
                i = end;
            }
        } else if next_is_paren
            && [
                "by",
                "without",
                "on",
                "ignoring",
                "group_left",
                "group_right",
            ]
            .contains(&t)
        {
            let end = group_end(i + 1);
            // by/without (labels) (expr): the labels of what is aggregated; otherwise
            // the labels of both sides, so of the whole expression.
            let scope =
                if ["by", "without"].contains(&t) && toks.get(end + 1).is_some_and(|n| n == "(") {
                    metrics_in(end + 1..group_end(end + 1))
                } else {
                    metrics_in(0..toks.len())
                };
            for label in toks[i + 2..end].iter().filter(|l| *l != ",") {
                errors.extend(check(label, &scope, t));
            }
            i = end;
        } else if t == "label_values" && next_is_paren {
            let end = group_end(i + 1);
            let scope = metrics_in(i + 2..end);
            errors.extend(check(&toks[end - 1], &scope, "label_values"));
        }
        i += 1;
    }
}

/// The identifiers and punctuation of a PromQL expression (or a Grafana
/// `label_values(...)` query): quoted strings and `[range]`s left out, operators
/// (`=~`, `!=`, `+`, ...) dropped, so that inside `{...}` only label names remain.
fn tokens(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = expr.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' | '`' => {
                let mut escaped = false;
                for d in chars.by_ref() {
                    if d == c && !escaped {
                        break;
                    }
                    escaped = d == '\\' && !escaped;
                }
            }
            '[' => while chars.next().is_some_and(|d| d != ']') {},
            '(' | ')' | '{' | '}' | ',' => out.push(c.to_string()),
            c if c.is_alphanumeric() || c == '_' || c == ':' || c == '.' || c == '$' => {
                let mut word = c.to_string();
                while let Some(&d) = chars.peek() {
                    if !(d.is_alphanumeric() || d == '_' || d == ':' || d == '.') {
                        break;
                    }
                    word.push(d);
                    chars.next();
                }
                out.push(word);
            }
            _ => {}
        }
    }
    // Inside braces only label names: drop the commas between matchers.
    let mut in_braces = false;
    out.retain(|t| {
        in_braces = (in_braces || t == "{") && t != "}";
        !(in_braces && t == ",")
    });
    out
}

/// Label names of `name="value",...}` (the text after a sample's `{`).
fn label_names(s: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = s;
    while let Some((name, after)) = rest.split_once("=\"") {
        names.push(name.trim_start_matches(',').to_owned());
        let mut escaped = false;
        let close = after
            .char_indices()
            .find(|&(_, c)| {
                let end = c == '"' && !escaped;
                escaped = c == '\\' && !escaped;
                end
            })
            .map(|(i, _)| i)
            .expect("an unterminated label value");
        rest = &after[close + 1..];
    }
    names
}

fn backticked(s: &str) -> Vec<String> {
    s.split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

fn without_parentheses(s: &str) -> String {
    let mut depth = 0;
    s.chars()
        .filter(|&c| {
            depth += i32::from(c == '(');
            let keep = depth == 0;
            depth -= i32::from(c == ')');
            keep && c != ')'
        })
        .collect()
}

/// (alert name, expr) of every rule of the alerts file; `expr: |` blocks end at the
/// first line indented no deeper than `expr:` itself.
fn alert_exprs() -> Vec<(String, String)> {
    let text = read(ALERTS);
    let lines: Vec<&str> = text.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut out = Vec::new();
    let mut alert = String::new();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        if let Some(name) = t.strip_prefix("- alert: ") {
            alert = name.trim().to_owned();
        } else if let Some(rest) = t.strip_prefix("expr:") {
            let rest = rest.trim();
            let expr = if rest.starts_with('|') || rest.starts_with('>') {
                lines[i + 1..]
                    .iter()
                    .take_while(|l| l.trim().is_empty() || indent(l) > indent(line))
                    .map(|l| l.trim())
                    .collect::<Vec<_>>()
                    .join(" ")
            } else {
                rest.to_owned()
            };
            out.push((alert.clone(), expr));
        }
    }
    assert!(out.len() >= 5, "{ALERTS}: too few alerts found");
    out
}

/// The dashboard's PromQL, Grafana's variables replaced, as recording rules for
/// `promtool check rules`: the official parser reads every panel query.
fn promtool_parses(exprs: &[(String, String)]) {
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (n, (at, expr)) in exprs.iter().enumerate() {
        if expr.starts_with("label_values(") {
            continue;
        }
        let promql = expr
            .replace("$__rate_interval", "5m")
            .replace("$__range", "1h")
            .replace("$instance", ".*")
            .replace("$vm", ".*");
        rules += &format!(
            "      # {at}\n      - record: dashboard_query_{n}\n        expr: {}\n",
            serde_json::to_string(&promql).unwrap()
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard-queries.yml");
    std::fs::write(&file, rules).unwrap();
    promtool(&["check", "rules", &file.display().to_string()]);
}

/// Runs promtool; fails the test (never skips it) when promtool is missing or fails.
fn promtool(args: &[&str]) {
    let promtool = std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".into());
    let out = Command::new(&promtool)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("{promtool}: {e}: scripts/setup.sh installs it (or set PROMTOOL to its path)")
        });
    assert!(
        out.status.success(),
        "promtool {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn path(relative: &str) -> String {
    root().join(relative).display().to_string()
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(root().join(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}
