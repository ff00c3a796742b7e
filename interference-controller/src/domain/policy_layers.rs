//! Layered policy documents: fleet -> group -> host. Each layer is a partial TOML
//! document; later layers win key by key (tables merge, anything else replaces). What
//! an agent receives is the merge without the controller's `[fleet]` table, checked as
//! a whole by [`super::policy_check::validate_policy`].

use std::fmt;

use interference_fleet::wire::FieldError;

use super::fleet_settings::FleetSettings;
use super::policy_check::{locate, validate_policy};

/// Where a document applies.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    Fleet,
    Group(String),
    Host(String),
}

impl Scope {
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a policy scope: fleet, group:<name> or host:<name>");
        let valid = |name: &str| {
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        };
        match s.split_once(':') {
            None if s == "fleet" => Ok(Self::Fleet),
            Some(("group", g)) if valid(g) => Ok(Self::Group(g.to_owned())),
            Some(("host", h)) if valid(h) => Ok(Self::Host(h.to_owned())),
            _ => Err(bad()),
        }
    }

    /// A file name for messages (`fleet.toml`, `group-web.toml`).
    pub fn file_name(&self) -> String {
        match self {
            Self::Fleet => "fleet.toml".into(),
            Self::Group(g) => format!("group-{g}.toml"),
            Self::Host(h) => format!("host-{h}.toml"),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fleet => f.write_str("fleet"),
            Self::Group(g) => write!(f, "group:{g}"),
            Self::Host(h) => write!(f, "host:{h}"),
        }
    }
}

/// One stored version of a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub scope: Scope,
    pub version: i64,
    pub body: String,
}

/// Merges `overlay` into `base`: tables recursively, every other value replaced.
pub fn merge(base: &mut toml::Table, overlay: &toml::Table) {
    for (key, value) in overlay {
        match (base.get_mut(key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

/// The document an agent gets from these layers (in order), and its version string
/// (`fleet@3+group:web@1`). Layers that do not parse are skipped (they were checked
/// when stored).
pub fn merged(layers: &[&Layer]) -> (String, String) {
    let mut table = toml::Table::new();
    let mut version = Vec::new();
    for layer in layers {
        if let Ok(t) = layer.body.parse::<toml::Table>() {
            merge(&mut table, &t);
        }
        version.push(format!("{}@{}", layer.scope, layer.version));
    }
    table.remove("fleet");
    let version = if version.is_empty() {
        "default".to_owned()
    } else {
        version.join("+")
    };
    (toml::to_string(&table).unwrap_or_default(), version)
}

/// Checks a new document for `scope` on its own (shape, `[fleet]` only in the fleet
/// scope) and merged with every combination of stored layers it would be part of
/// (`others`: the latest document of every other scope, and each host's group).
/// Problems are located in the new document where the field is in it.
pub fn check_new_layer(
    scope: &Scope,
    body: &str,
    others: &[Layer],
    host_groups: &[(String, String)],
) -> Result<(), Vec<FieldError>> {
    let file = scope.file_name();
    validate_policy(&file, body)?;
    match (scope, FleetSettings::from_document(body)) {
        (Scope::Fleet, Err((field, message))) => {
            return Err(locate(&file, body, vec![(field, message)]));
        }
        (Scope::Group(_) | Scope::Host(_), _) if has_fleet_table(body) => {
            return Err(locate(
                &file,
                body,
                vec![(
                    "fleet".into(),
                    "[fleet] applies to the whole fleet: put it in the fleet document".into(),
                )],
            ));
        }
        _ => {}
    }
    let new = Layer {
        scope: scope.clone(),
        version: 0,
        body: body.to_owned(),
    };
    let find = |s: &Scope| -> Option<&Layer> {
        if *s == new.scope {
            Some(&new)
        } else {
            others.iter().find(|l| l.scope == *s)
        }
    };
    // Every (group, host) stack this layer takes part in; a group with no host yet
    // counts too.
    let mut stacks: Vec<(Option<String>, Option<String>)> = vec![(None, None)];
    let mut groups: Vec<String> = others
        .iter()
        .filter_map(|l| match &l.scope {
            Scope::Group(g) => Some(g.clone()),
            _ => None,
        })
        .collect();
    if let Scope::Group(g) = scope {
        groups.push(g.clone());
    }
    groups.sort();
    groups.dedup();
    stacks.extend(groups.iter().map(|g| (Some(g.clone()), None)));
    for (host, group) in host_groups {
        stacks.push((Some(group.clone()), Some(host.clone())));
    }
    if let Scope::Host(h) = scope {
        if !host_groups.iter().any(|(host, _)| host == h) {
            stacks.push((None, Some(h.clone())));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for (group, host) in stacks {
        let mut layers: Vec<&Layer> = Vec::new();
        layers.extend(find(&Scope::Fleet));
        if let Some(g) = &group {
            layers.extend(find(&Scope::Group(g.clone())));
        }
        if let Some(h) = &host {
            layers.extend(find(&Scope::Host(h.clone())));
        }
        if !layers.iter().any(|l| l.scope == new.scope) {
            continue;
        }
        let (text, version) = merged(&layers);
        if !seen.insert(text.clone()) {
            continue;
        }
        if let Err(problems) = validate_policy(&file, &text) {
            let raw: Vec<(String, String)> = problems
                .into_iter()
                .map(|p| (p.field, format!("{} (merged as {version})", p.message)))
                .collect();
            return Err(locate(&file, body, raw));
        }
    }
    Ok(())
}

fn has_fleet_table(body: &str) -> bool {
    body.parse::<toml::Table>()
        .map(|t| t.contains_key("fleet"))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(scope: Scope, version: i64, body: &str) -> Layer {
        Layer {
            scope,
            version,
            body: body.into(),
        }
    }

    #[test]
    fn later_layers_win_key_by_key() {
        let fleet = layer(
            Scope::Fleet,
            3,
            "[policy]\non_threshold = 50\noff_threshold = 30\n[fleet]\nplacement = false\n",
        );
        let group = layer(
            Scope::Group("web".into()),
            1,
            "[policy]\non_threshold = 45\n",
        );
        let (text, version) = merged(&[&fleet, &group]);
        assert_eq!(version, "fleet@3+group:web@1");
        let t: toml::Table = text.parse().expect("toml");
        assert_eq!(t["policy"]["on_threshold"].as_integer(), Some(45));
        assert_eq!(t["policy"]["off_threshold"].as_integer(), Some(30));
        assert!(!t.contains_key("fleet"), "{text}");
        assert_eq!(merged(&[]).1, "default");
    }

    #[test]
    fn a_layer_is_checked_merged_with_the_others() {
        let others = vec![layer(
            Scope::Fleet,
            1,
            "[policy]\non_threshold = 50\noff_threshold = 30\n",
        )];
        // Fine alone (off 25 < on 35) but not over the fleet's off threshold of 30? It is:
        // 30 < 35. Over a group that raises off to 40 it is not.
        let group = Scope::Group("web".into());
        assert!(check_new_layer(&group, "[policy]\non_threshold = 35\n", &others, &[]).is_ok());
        let e = check_new_layer(&group, "[policy]\non_threshold = 28\n", &others, &[])
            .expect_err("merged off 30 >= on 28");
        assert_eq!(e[0].file, "group-web.toml");
        assert_eq!(e[0].field, "policy.off_threshold");
        assert!(
            e[0].message.contains("merged as fleet@1+group:web@0"),
            "{e:?}"
        );
        let e = check_new_layer(&group, "[fleet]\nplacement = false\n", &others, &[])
            .expect_err("fleet table in a group");
        assert_eq!((e[0].line, e[0].field.as_str()), (1, "fleet"));
        let e = check_new_layer(
            &Scope::Fleet,
            "[fleet]\nmax_concurrent_migrations = 0\n",
            &[],
            &[],
        )
        .expect_err("bad fleet");
        assert_eq!(
            (e[0].line, e[0].field.as_str()),
            (2, "fleet.max_concurrent_migrations")
        );
    }

    #[test]
    fn scopes() {
        assert_eq!(Scope::parse("fleet"), Ok(Scope::Fleet));
        assert_eq!(
            Scope::parse("group:web-1"),
            Ok(Scope::Group("web-1".into()))
        );
        assert_eq!(
            Scope::parse("host:h1").map(|s| s.to_string()),
            Ok("host:h1".into())
        );
        assert!(Scope::parse("group:").is_err());
        assert!(Scope::parse("rack:1").is_err());
    }
}
