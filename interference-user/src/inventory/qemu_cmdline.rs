//! Decoding a QEMU command line: the VM's name, UUID, QMP socket, vCPU count (`-smp`)
//! and memory size (`-m`). Pure functions of argv, so every spelling libvirt and people use is unit-tested without a process.
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
    /// Boot vCPU count from `-smp` (`cpus`, else `maxcpus`, else the product of the
    /// topology); None without a usable `-smp`.
    pub vcpus: Option<u32>,
    /// Initial guest memory in bytes from `-m` (`size`); None without a usable `-m`
    /// (QEMU then uses the machine's default).
    pub memory_bytes: Option<u64>,
}

/// The `-smp` keys whose product is the vCPU count when `cpus` and `maxcpus` are absent.
const SMP_TOPOLOGY: [&str; 8] = [
    "drawers", "books", "sockets", "dies", "clusters", "modules", "cores", "threads",
];

/// The boot vCPU count of a `-smp` value, QEMU's way: `cpus` (the implied key, so
/// `-smp 4` is `cpus=4`), else `maxcpus`, else the product of the topology keys given
/// (missing ones count 1). A value of 0 counts as absent, as in QEMU. None when no key
/// gives a count, or when a count is not a number or the product overflows (QEMU
/// itself would not have started).
pub fn parse_smp(value: &str) -> Option<u32> {
    smp_vcpus(&opts(value, "cpus"))
}

fn smp_vcpus(map: &HashMap<String, String>) -> Option<u32> {
    // Some(None): key absent or 0; None: not a number.
    let get = |key: &str| -> Option<Option<u32>> {
        match map.get(key) {
            None => Some(None),
            Some(v) => v.trim().parse::<u32>().ok().map(|n| (n > 0).then_some(n)),
        }
    };
    let cpus = get("cpus")?;
    let maxcpus = get("maxcpus")?;
    let mut topology: Option<u32> = None;
    for key in SMP_TOPOLOGY {
        if let Some(n) = get(key)? {
            topology = Some(topology.unwrap_or(1).checked_mul(n)?);
        }
    }
    cpus.or(maxcpus).or(topology)
}

/// Multiplier of a QEMU size suffix (`qemu_strtosz`: case-insensitive, powers of 1024).
fn size_suffix(c: char) -> Option<u64> {
    let shift = match c.to_ascii_uppercase() {
        'B' => 0,
        'K' => 10,
        'M' => 20,
        'G' => 30,
        'T' => 40,
        'P' => 50,
        'E' => 60,
        _ => return None,
    };
    Some(1 << shift)
}

/// A QEMU memory size in bytes, `-m`'s way: a plain number is MiB (`-m 512`), a
/// suffix sets the unit (`512M`, `2G`, `2097152k`, `1.5G`; `B` for bytes), a fraction
/// needs a suffix other than `B`. None for anything else, 0 or overflow.
pub fn parse_mem_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let last = text.chars().last()?;
    let (number, mul) = if last.is_ascii_digit() {
        (text, 1 << 20)
    } else {
        (&text[..text.len() - last.len_utf8()], size_suffix(last)?)
    };
    let (int, frac) = match number.split_once('.') {
        Some((i, f)) => (i, f),
        None => (number, ""),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !digits(int) || !digits(frac) {
        return None;
    }
    if number.contains('.') && (mul == 1 || last.is_ascii_digit()) {
        return None;
    }
    let whole = int.parse::<u64>().ok()?.checked_mul(mul)?;
    // Only the first 18 fraction digits can matter (mul < 2^64 < 10^20).
    let frac = &frac[..frac.len().min(18)];
    let part = if frac.is_empty() {
        0
    } else {
        let scale = 10u128.pow(frac.len() as u32);
        (frac.parse::<u128>().ok()? * u128::from(mul) / scale) as u64
    };
    let bytes = whole.checked_add(part)?;
    (bytes > 0).then_some(bytes)
}

/// The initial memory size of a `-m` value (`-m 2G`, `-m size=1024M,slots=4,maxmem=8G`)
/// in bytes, rounded up to 8 KiB as QEMU does.
pub fn parse_mem(value: &str) -> Option<u64> {
    mem_bytes(&opts(value, "size"))
}

fn mem_bytes(map: &HashMap<String, String>) -> Option<u64> {
    parse_mem_size(map.get("size")?)?.checked_next_multiple_of(8192)
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
    let mut smp: HashMap<String, String> = HashMap::new();
    let mut mem: HashMap<String, String> = HashMap::new();
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
            // QEMU merges repeated -smp / -m options, a later key overriding.
            "smp" => smp.extend(opts(value, "cpus")),
            "m" => mem.extend(opts(value, "size")),
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
    out.vcpus = smp_vcpus(&smp);
    out.memory_bytes = mem_bytes(&mem);
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

    #[test]
    fn smp_forms() {
        assert_eq!(parse("qemu -smp 4").vcpus, Some(4));
        assert_eq!(parse("qemu -smp cpus=4,maxcpus=8").vcpus, Some(4));
        assert_eq!(
            parse("qemu -smp 2,sockets=2,cores=1,threads=1").vcpus,
            Some(2)
        );
        // Without cpus: maxcpus, else the topology's product (missing keys count 1).
        assert_eq!(
            parse("qemu -smp sockets=2,cores=4,threads=2").vcpus,
            Some(16)
        );
        assert_eq!(parse("qemu -smp sockets=2").vcpus, Some(2));
        assert_eq!(parse("qemu -smp cores=3,dies=2").vcpus, Some(6));
        assert_eq!(parse("qemu -smp maxcpus=8").vcpus, Some(8));
        assert_eq!(parse("qemu --smp 3").vcpus, Some(3));
        // Repeated: QEMU merges them, a later key overriding an earlier one.
        assert_eq!(parse("qemu -smp 2 -smp maxcpus=4").vcpus, Some(2));
        assert_eq!(parse("qemu -smp 2 -smp 6").vcpus, Some(6));
        assert_eq!(parse("qemu -name x").vcpus, None);
    }

    #[test]
    fn smp_malformed_is_none() {
        for bad in [
            "abc",
            "",
            "0",
            "-1",
            "cpus=",
            "cpus=4x",
            "sockets=x,cores=2",
            "4,cores=two",
            "sockets=65536,cores=65536,threads=2",
            "99999999999",
            "maxcpus=0",
            ",,,",
            "=",
            "cpus=\u{1F600}",
        ] {
            assert_eq!(parse_smp(bad), None, "{bad:?}");
        }
        // A trailing -smp without a value is not an option with a value.
        assert_eq!(parse("qemu -smp").vcpus, None);
    }

    #[test]
    fn mem_forms() {
        const MIB: u64 = 1 << 20;
        assert_eq!(parse("qemu -m 512").memory_bytes, Some(512 * MIB));
        assert_eq!(parse("qemu -m 2G").memory_bytes, Some(2048 * MIB));
        assert_eq!(parse("qemu -m 2g").memory_bytes, Some(2048 * MIB));
        assert_eq!(parse("qemu -m 1024M").memory_bytes, Some(1024 * MIB));
        assert_eq!(parse("qemu -m 1024m").memory_bytes, Some(1024 * MIB));
        assert_eq!(parse("qemu -m 1T").memory_bytes, Some(1 << 40));
        assert_eq!(parse("qemu -m 1.5G").memory_bytes, Some(1536 * MIB));
        // libvirt's spelling.
        assert_eq!(
            parse("qemu -m size=2097152k").memory_bytes,
            Some(2048 * MIB)
        );
        assert_eq!(
            parse("qemu -m size=4194304K").memory_bytes,
            Some(4096 * MIB)
        );
        assert_eq!(
            parse("qemu -m size=1024M,slots=4,maxmem=8G").memory_bytes,
            Some(1024 * MIB)
        );
        assert_eq!(
            parse("qemu -m 4G,slots=2,maxmem=16G").memory_bytes,
            Some(4096 * MIB)
        );
        // Bytes are rounded up to QEMU's 8 KiB.
        assert_eq!(parse("qemu -m 1000B").memory_bytes, Some(8192));
        assert_eq!(parse("qemu -m 100k").memory_bytes, Some(104 * 1024));
        // Repeated: the later size wins.
        assert_eq!(
            parse("qemu -m 512 -m size=1G").memory_bytes,
            Some(1024 * MIB)
        );
        assert_eq!(
            parse("qemu -m slots=2 -m 256").memory_bytes,
            Some(256 * MIB)
        );
        assert_eq!(parse("qemu -smp 2").memory_bytes, None);
    }

    #[test]
    fn mem_malformed_is_none() {
        for bad in [
            "",
            "0",
            "0G",
            "-1",
            "-1G",
            "abc",
            "2X",
            "2GB",
            "G",
            "1.5",
            "1.5B",
            ".5G",
            "1..5G",
            "0x10",
            "slots=4,maxmem=8G",
            "size=",
            "18446744073709551615",
            "17179869184T",
            "16E",
            "2\u{1F600}",
            "\u{1F600}",
        ] {
            assert_eq!(parse_mem(bad), None, "{bad:?}");
        }
        assert_eq!(
            parse_mem_size("1.00000000000000000000000001G"),
            Some(1 << 30)
        );
        assert_eq!(parse_mem_size(" 64 "), Some(64 << 20));
    }
}
