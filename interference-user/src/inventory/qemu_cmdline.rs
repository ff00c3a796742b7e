//! Decoding a QEMU command line: the VM's name, UUID and QMP socket. Pure functions of
//! argv, so every spelling libvirt and people use is unit-tested without a process.
//!
//! QEMU option values use QemuOpts syntax: comma-separated `key=value` pairs where the
//! first element may omit its key (`-name foo` = `-name guest=foo`), a literal comma
//! is written `,,`, and a bare `flag` / `noflag` means `flag=on` / `flag=off`.

use std::collections::HashMap;
use std::path::PathBuf;

/// Where the QMP socket of a VM is, as its command line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QmpEndpoint {
    /// A listening unix socket at this path.
    Path(PathBuf),
    /// A listening socket passed in as this fd (libvirt >= 5.6 pre-opens the monitor
    /// socket); the path is found through `/proc/<pid>/fd` and `/proc/<pid>/net/unix`.
    Fd(i32),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QemuCmdline {
    /// `-name guest=...` (or the implied first element).
    pub name: Option<String>,
    pub uuid: Option<String>,
    pub qmp: Option<QmpEndpoint>,
}

/// Split a QemuOpts value at single commas; `,,` is a literal comma.
pub fn split_opts(value: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            (',', Some(',')) => {
                chars.next();
                current.push(',');
            }
            (',', _) => parts.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    parts.push(current);
    parts
}

/// A QemuOpts value as key -> value, with `implied` naming the first element when it
/// has no `=`.
fn opts(value: &str, implied: &str) -> HashMap<String, String> {
    let mut map = HashMap::new();
    for (i, part) in split_opts(value).into_iter().enumerate() {
        if part.is_empty() {
            continue;
        }
        match part.split_once('=') {
            Some((k, v)) => {
                map.entry(k.to_owned()).or_insert_with(|| v.to_owned());
            }
            None if i == 0 => {
                map.insert(implied.to_owned(), part);
            }
            None => {
                let (key, on) = match part.strip_prefix("no") {
                    Some(k) if matches!(k, "wait" | "server" | "delay" | "telnet") => {
                        (k.to_owned(), "off")
                    }
                    _ => (part, "on"),
                };
                map.entry(key).or_insert_with(|| on.to_owned());
            }
        }
    }
    map
}

fn is_on(map: &HashMap<String, String>, key: &str) -> bool {
    map.get(key)
        .is_some_and(|v| matches!(v.as_str(), "on" | "yes" | "true" | "y"))
}

/// A listening unix socket from a socket chardev's options (`path=` or `fd=`).
fn socket_endpoint(map: &HashMap<String, String>) -> Option<QmpEndpoint> {
    if !is_on(map, "server") {
        return None;
    }
    if let Some(path) = map.get("path") {
        return Some(QmpEndpoint::Path(PathBuf::from(path)));
    }
    map.get("fd")
        .and_then(|fd| fd.parse().ok())
        .map(QmpEndpoint::Fd)
}

/// The legacy chardev spelling of `-qmp`: `unix:/path,server=on,wait=off`.
fn legacy_qmp(value: &str) -> Option<QmpEndpoint> {
    let rest = value.strip_prefix("unix:")?;
    let mut map = opts(rest, "path");
    map.entry("backend".to_owned())
        .or_insert_with(|| "socket".to_owned());
    socket_endpoint(&map)
}

/// Decode argv (`argv[0]` is the binary).
pub fn parse_cmdline(args: &[String]) -> QemuCmdline {
    let mut out = QemuCmdline::default();
    let mut chardevs: HashMap<String, HashMap<String, String>> = HashMap::new();
    let mut control_monitors: Vec<String> = Vec::new();
    let mut legacy: Option<QmpEndpoint> = None;
    let mut i = 1;
    while i < args.len() {
        let option = args[i]
            .strip_prefix("--")
            .or_else(|| args[i].strip_prefix('-'));
        let value = args.get(i + 1);
        let (Some(option), Some(value)) = (option, value) else {
            i += 1;
            continue;
        };
        match option {
            "name" => out.name = opts(value, "guest").remove("guest").or(out.name),
            "uuid" => out.uuid = Some(value.clone()),
            "qmp" | "qmp-pretty" => legacy = legacy.or_else(|| legacy_qmp(value)),
            "chardev" => {
                let map = opts(value, "backend");
                if let Some(id) = map.get("id") {
                    chardevs.insert(id.clone(), map);
                }
            }
            "mon" => {
                let map = opts(value, "chardev");
                if map.get("mode").map(String::as_str) == Some("control") {
                    control_monitors.extend(map.get("chardev").cloned());
                }
            }
            // Options we do not decode may or may not take a value; only step over
            // the value of the ones we know take one.
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    let from_mon = control_monitors
        .iter()
        .filter_map(|id| chardevs.get(id))
        .filter(|c| c.get("backend").map(String::as_str) == Some("socket"))
        .find_map(socket_endpoint);
    out.qmp = legacy.or(from_mon);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &str) -> QemuCmdline {
        let argv: Vec<String> = args.split(' ').map(str::to_owned).collect();
        parse_cmdline(&argv)
    }

    #[test]
    fn split_opts_handles_escaped_commas() {
        assert_eq!(
            split_opts("guest=a,,b,debug-threads=on"),
            vec!["guest=a,b", "debug-threads=on"]
        );
        assert_eq!(split_opts("a,,,,b"), vec!["a,,b"]);
        assert_eq!(split_opts(""), vec![""]);
    }

    #[test]
    fn name_spellings() {
        assert_eq!(
            parse("qemu -name guest=web-1,debug-threads=on")
                .name
                .as_deref(),
            Some("web-1")
        );
        assert_eq!(parse("qemu -name web-1").name.as_deref(), Some("web-1"));
        assert_eq!(
            parse("qemu --name web,,1,debug-threads=on").name.as_deref(),
            Some("web,1")
        );
        assert_eq!(
            parse("qemu -name debug-threads=on,guest=x").name.as_deref(),
            Some("x")
        );
        assert_eq!(parse("qemu -m 512 -enable-kvm -smp 2").name, None);
    }

    #[test]
    fn uuid_and_flags_without_values() {
        let c = parse(
            "qemu -enable-kvm -uuid 1b4e28ba-2fa1-11d2-883f-0016d3cca427 -nographic -name vm",
        );
        assert_eq!(
            c.uuid.as_deref(),
            Some("1b4e28ba-2fa1-11d2-883f-0016d3cca427")
        );
        assert_eq!(c.name.as_deref(), Some("vm"));
    }

    #[test]
    fn qmp_legacy_forms() {
        let p = |s: &str| Some(QmpEndpoint::Path(PathBuf::from(s)));
        assert_eq!(
            parse("qemu -qmp unix:/run/a.sock,server=on,wait=off").qmp,
            p("/run/a.sock")
        );
        assert_eq!(
            parse("qemu -qmp unix:/run/b.sock,server,nowait").qmp,
            p("/run/b.sock")
        );
        assert_eq!(
            parse("qemu -qmp unix:/run/c,,d.sock,server").qmp,
            p("/run/c,d.sock")
        );
        // A client socket or a TCP one is nothing we can connect to as a unix server.
        assert_eq!(parse("qemu -qmp unix:/run/a.sock").qmp, None);
        assert_eq!(parse("qemu -qmp tcp:localhost:4444,server=on").qmp, None);
    }

    #[test]
    fn qmp_chardev_and_mon() {
        let c = parse(
            "qemu -chardev socket,id=charmonitor,path=/var/lib/libvirt/qemu/domain-3-web-1/monitor.sock,server=on,wait=off \
             -mon chardev=charmonitor,id=monitor,mode=control",
        );
        assert_eq!(
            c.qmp,
            Some(QmpEndpoint::Path(
                "/var/lib/libvirt/qemu/domain-3-web-1/monitor.sock".into()
            ))
        );
        let c = parse("qemu -mon chardev=charmonitor,id=monitor,mode=control -chardev socket,id=charmonitor,fd=23,server=on,wait=off");
        assert_eq!(c.qmp, Some(QmpEndpoint::Fd(23)));
        // An HMP (readline) monitor is not QMP.
        let c = parse("qemu -chardev socket,id=hmp,path=/run/hmp.sock,server=on -mon chardev=hmp");
        assert_eq!(c.qmp, None);
    }
}
