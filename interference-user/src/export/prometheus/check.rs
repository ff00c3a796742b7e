//! A strict reader of the text format, for tests: `promtool check metrics` is not
//! installed on the build machines, so the rules our output must follow are checked
//! here: every sample under a family declared with HELP and TYPE, families contiguous,
//! counters named `_total` and not negative, label values correctly escaped, no
//! duplicate series, histogram buckets with increasing `le`, monotone counts, and a
//! `+Inf` bucket equal to `_count`.

use std::collections::{BTreeMap, BTreeSet};

/// One parsed sample: metric name, labels (unescaped), value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Families by name with their type and samples, or the first rule broken.
pub fn validate(text: &str) -> Result<BTreeMap<String, (String, Vec<Sample>)>, String> {
    let mut families: BTreeMap<String, (String, Vec<Sample>)> = BTreeMap::new();
    let mut help: BTreeSet<String> = BTreeSet::new();
    let mut current: Option<String> = None;
    let mut closed: BTreeSet<String> = BTreeSet::new();
    let mut series: BTreeSet<(String, Vec<(String, String)>)> = BTreeSet::new();
    for (i, line) in text.lines().enumerate() {
        let at = |m: String| format!("line {}: {m}: {line:?}", i + 1);
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or_default().to_string();
            if !help.insert(name.clone()) {
                return Err(at(format!("second HELP for {name}")));
            }
            switch(&mut current, &mut closed, &name).map_err(at)?;
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split(' ');
            let (Some(name), Some(kind), None) = (it.next(), it.next(), it.next()) else {
                return Err(at("bad TYPE line".into()));
            };
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                return Err(at(format!("unknown type {kind}")));
            }
            if families.contains_key(name) {
                return Err(at(format!("second TYPE for {name}")));
            }
            if !help.contains(name) {
                return Err(at(format!("TYPE of {name} without HELP before it")));
            }
            if kind == "counter" && !name.ends_with("_total") {
                return Err(at(format!("counter {name} does not end in _total")));
            }
            switch(&mut current, &mut closed, name).map_err(at)?;
            families.insert(name.to_string(), (kind.to_string(), Vec::new()));
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            return Err(at("unexpected comment or empty line".into()));
        }
        let sample = parse_sample(line).map_err(at)?;
        let family = family_of(&families, &sample.name)
            .ok_or_else(|| at(format!("{} has no TYPE", sample.name)))?;
        if current.as_deref() != Some(family.as_str()) {
            return Err(at(format!("sample of {family} outside its family's block")));
        }
        let (kind, samples) = families.get_mut(&family).ok_or_else(|| at("?".into()))?;
        if kind == "counter" && (sample.value.is_nan() || sample.value < 0.0) {
            return Err(at("negative or NaN counter".into()));
        }
        let key: Vec<(String, String)> = sample.labels.clone().into_iter().collect();
        if !series.insert((sample.name.clone(), key)) {
            return Err(at("duplicate series".into()));
        }
        samples.push(sample);
    }
    for (name, (kind, samples)) in &families {
        if kind == "histogram" {
            check_histogram(name, samples)?;
        }
    }
    Ok(families)
}

fn switch(
    current: &mut Option<String>,
    closed: &mut BTreeSet<String>,
    name: &str,
) -> Result<(), String> {
    if current.as_deref() == Some(name) {
        return Ok(());
    }
    if closed.contains(name) {
        return Err(format!("family {name} is not contiguous"));
    }
    if let Some(c) = current.take() {
        closed.insert(c);
    }
    *current = Some(name.to_string());
    Ok(())
}

fn family_of(families: &BTreeMap<String, (String, Vec<Sample>)>, name: &str) -> Option<String> {
    if let Some((kind, _)) = families.get(name) {
        return (kind != "histogram").then(|| name.to_string());
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        let base = name.strip_suffix(suffix)?;
        let (kind, _) = families.get(base)?;
        (kind == "histogram").then(|| base.to_string())
    })
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..name_end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err("bad metric name".into());
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(mut r) = rest.strip_prefix('{') {
        loop {
            if let Some(after) = r.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = r.find('=').ok_or("label without =")?;
            let lname = &r[..eq];
            if lname.is_empty()
                || !lname.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                || lname.starts_with(|c: char| c.is_ascii_digit())
            {
                return Err(format!("bad label name {lname:?}"));
            }
            r = r[eq + 1..]
                .strip_prefix('"')
                .ok_or("label value not quoted")?;
            let mut value = String::new();
            let mut chars = r.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    '\n' => return Err("raw newline in label value".into()),
                    '\\' => match chars.next().map(|(_, c)| c) {
                        Some('\\') => value.push('\\'),
                        Some('"') => value.push('"'),
                        Some('n') => value.push('\n'),
                        other => return Err(format!("bad escape {other:?}")),
                    },
                    c => value.push(c),
                }
            }
            r = &r[end.ok_or("unterminated label value")?..];
            if let Some(after) = r.strip_prefix(',') {
                r = after;
            } else if !r.starts_with('}') {
                return Err("expected , or } after a label".into());
            }
            if labels.insert(lname.to_string(), value).is_some() {
                return Err(format!("label {lname} twice"));
            }
        }
    }
    let value = rest.strip_prefix(' ').ok_or("no space before the value")?;
    if value.contains(' ') {
        return Err("timestamps or trailing fields are not expected".into());
    }
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().map_err(|_| format!("bad value {v:?}"))?,
    };
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

fn check_histogram(name: &str, samples: &[Sample]) -> Result<(), String> {
    type Key = Vec<(String, String)>;
    let mut buckets: BTreeMap<Key, Vec<(f64, f64)>> = BTreeMap::new();
    let mut counts: BTreeMap<Key, f64> = BTreeMap::new();
    let mut sums: BTreeSet<Key> = BTreeSet::new();
    for s in samples {
        let mut labels = s.labels.clone();
        let le = labels.remove("le");
        let key: Key = labels.into_iter().collect();
        let suffix = &s.name[name.len()..];
        match (suffix, le) {
            ("_bucket", Some(le)) => {
                let le: f64 = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().map_err(|_| format!("{name}: bad le {le:?}"))?
                };
                buckets.entry(key).or_default().push((le, s.value));
            }
            ("_count", None) => {
                counts.insert(key, s.value);
            }
            ("_sum", None) => {
                sums.insert(key);
            }
            _ => return Err(format!("{name}: stray {} sample", s.name)),
        }
    }
    for (key, b) in &buckets {
        for w in b.windows(2) {
            if w[1].0.is_nan() || w[1].0 <= w[0].0 {
                return Err(format!("{name}{key:?}: le not increasing"));
            }
            if w[1].1 < w[0].1 {
                return Err(format!("{name}{key:?}: bucket counts decrease"));
            }
        }
        let last = b.last().ok_or("no buckets")?;
        if last.0 != f64::INFINITY {
            return Err(format!("{name}{key:?}: no +Inf bucket"));
        }
        if counts.get(key) != Some(&last.1) {
            return Err(format!("{name}{key:?}: +Inf bucket != _count"));
        }
        if !sums.contains(key) {
            return Err(format!("{name}{key:?}: no _sum"));
        }
    }
    if buckets.len() != counts.len() {
        return Err(format!("{name}: _count without buckets"));
    }
    Ok(())
}

#[test]
fn the_checker_rejects_what_it_should() {
    let ok = "# HELP a_total h\n# TYPE a_total counter\na_total{x=\"q\\\"\"} 1\n";
    assert!(validate(ok).is_ok());
    for bad in [
        "a_total 1\n",
        "# TYPE a_total counter\na_total 1\n",
        "# HELP a h\n# TYPE a counter\na 1\n",
        "# HELP a_total h\n# TYPE a_total counter\na_total -1\n",
        "# HELP a_total h\n# TYPE a_total counter\na_total{x=\"\\t\"} 1\n",
        "# HELP a_total h\n# TYPE a_total counter\na_total 1\na_total 2\n",
        "# HELP g h\n# TYPE g gauge\ng 1\n# HELP b h\n# TYPE b gauge\nb 1\ng{x=\"1\"} 2\n",
        "# HELP h h\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\n\
         h_sum 0\nh_count 1\n",
        "# HELP h h\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 1\n\
         h_sum 0\nh_count 2\n",
        "# HELP h h\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 0\nh_count 1\n",
    ] {
        assert!(validate(bad).is_err(), "accepted {bad:?}");
    }
}
