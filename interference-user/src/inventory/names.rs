//! VM names: they end up in file paths (journal, per-VM state), Prometheus labels and
//! ledger ids, so they are restricted to a path- and label-safe alphabet. Static names
//! are refused when they break the rule; names found on the host (QEMU `-name`, libvirt
//! scopes) are made safe instead, since the agent cannot refuse a running VM.

/// Longest VM name accepted.
pub const MAX_NAME_LEN: usize = 64;

fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

/// Why `name` cannot be a VM name, or Ok.
pub fn check_vm_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a VM name must not be empty".to_owned());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!("{name:?} is longer than {MAX_NAME_LEN} characters"));
    }
    if let Some(c) = name.chars().find(|c| !allowed(*c)) {
        return Err(format!(
            "{name:?} contains {c:?}; use only letters, digits, '-', '_' and '.'"
        ));
    }
    if name.chars().all(|c| c == '.') {
        return Err(format!("{name:?} is not a usable name"));
    }
    Ok(())
}

/// A valid VM name made from `raw` (disallowed characters become `_`, truncated), or
/// `fallback` when nothing usable is left.
pub fn sanitize_vm_name(raw: &str, fallback: &str) -> String {
    let name: String = raw
        .chars()
        .map(|c| if allowed(c) { c } else { '_' })
        .take(MAX_NAME_LEN)
        .collect();
    if check_vm_name(&name).is_ok() {
        name
    } else {
        fallback.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_vm_name("web-1.prod_a").is_ok());
        assert!(check_vm_name("").is_err());
        assert!(check_vm_name("..").is_err());
        assert_eq!(
            check_vm_name("a/b").unwrap_err(),
            "\"a/b\" contains '/'; use only letters, digits, '-', '_' and '.'"
        );
        assert!(check_vm_name(&"x".repeat(65)).is_err());
        assert_eq!(sanitize_vm_name("my vm/1", "qemu-1"), "my_vm_1");
        assert_eq!(sanitize_vm_name("..", "qemu-1"), "qemu-1");
        assert_eq!(sanitize_vm_name(&"é".repeat(70), "q").len(), 64);
    }
}
