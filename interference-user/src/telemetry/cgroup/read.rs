//! Reading a VM's cgroup directories: which file holds what, in v1 and in v2.
//!
//! Every directory is read on its own into a partial [`CgroupCounters`]; the unified
//! hierarchy's come first, so its values win and the v1 controllers fill the gaps
//! ([`CgroupCounters::or`]). A file that does not exist (or that the kernel refuses
//! with EOPNOTSUPP, as PSI files do when PSI is disabled) is "not available"; a
//! directory that no longer exists is [`CgroupError::Vanished`], so that the caller can
//! drop the VM rather than report zeros.

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use thiserror::Error;

use super::parse::{
    parse_blkio_throttle, parse_cpu_list, parse_flat_keyed, parse_io_stat, parse_limit, parse_psi,
    parse_u64, ParseError,
};
use super::{CgroupCounters, CpuCounters, IoCounters, MemoryCounters, PsiCounters};
use crate::host::kernel_file::{open_dir, read_at};
use crate::inventory::{Hierarchy, VmCgroup};

#[derive(Debug, Error)]
pub enum CgroupError {
    /// The directory is gone: the VM exited or its cgroup was recreated.
    #[error("cgroup {} vanished", path.display())]
    Vanished { path: PathBuf },
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot parse {}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: ParseError,
    },
}

/// Reads all cgroups of one VM and merges them, v2 first (see the module doc).
pub fn read_counters(cgroups: &[VmCgroup]) -> Result<CgroupCounters, CgroupError> {
    let v2 = cgroups.iter().filter(|c| c.hierarchy == Hierarchy::V2);
    let v1 = cgroups.iter().filter(|c| c.hierarchy != Hierarchy::V2);
    let mut acc = CgroupCounters::default();
    for cg in v2.chain(v1) {
        let mut dir = Dir::open(&cg.path)?;
        let one = match &cg.hierarchy {
            Hierarchy::V2 => read_v2(&mut dir)?,
            Hierarchy::V1 { controllers } => read_v1(&mut dir, controllers, &acc)?,
        };
        dir.finish()?;
        acc = acc.or(one);
    }
    Ok(acc)
}

fn read_v2(d: &mut Dir) -> Result<CgroupCounters, CgroupError> {
    let cpu = d
        .parse("cpu.stat", |t| {
            let m = parse_flat_keyed(t)?;
            let us = |k: &str| m.get(k).map(|v| v.saturating_mul(1000));
            Ok(CpuCounters {
                usage_ns: us("usage_usec"),
                user_ns: us("user_usec"),
                system_ns: us("system_usec"),
                // Present only when the cpu controller is enabled for the cgroup.
                periods: m.get("nr_periods").copied(),
                throttled_periods: m.get("nr_throttled").copied(),
                throttled_ns: us("throttled_usec"),
            })
        })?
        .unwrap_or_default();
    // A v2 cgroup lists its enabled controllers; skipping the files of absent ones
    // (all of them on a hybrid host's unified hierarchy) saves an open per file per
    // VM per tick. Without the file (very old kernels) everything is tried.
    let controllers = d.read_quiet("cgroup.controllers");
    let enabled = |c: &str| {
        controllers
            .as_deref()
            .is_none_or(|list| list.split_whitespace().any(|x| x == c))
    };
    let memory = if enabled("memory") {
        read_v2_memory(d)?
    } else {
        MemoryCounters::default()
    };
    let psi = PsiCounters {
        cpu: d.parse("cpu.pressure", parse_psi)?,
        memory: d.parse("memory.pressure", parse_psi)?,
        io: d.parse("io.pressure", parse_psi)?,
    };
    let io = if enabled("io") {
        d.parse("io.stat", parse_io_stat)?
            .map(|t| IoCounters {
                read_bytes: Some(t.rbytes),
                write_bytes: Some(t.wbytes),
                read_ops: Some(t.rios),
                write_ops: Some(t.wios),
                discard_bytes: Some(t.dbytes),
                discard_ops: Some(t.dios),
            })
            .unwrap_or_default()
    } else {
        IoCounters::default()
    };
    let cpus = if enabled("cpuset") {
        d.parse("cpuset.cpus.effective", parse_cpu_list)?
    } else {
        None
    };
    Ok(CgroupCounters {
        cpu,
        memory,
        psi,
        io,
        cpus,
    })
}

fn read_v2_memory(d: &mut Dir) -> Result<MemoryCounters, CgroupError> {
    let stat = d.parse("memory.stat", |t| {
        let m = parse_flat_keyed(t)?;
        let get = |k: &str| m.get(k).copied();
        Ok([get("anon"), get("file"), get("pgmajfault")])
    })?;
    let [anon_bytes, file_bytes, major_faults] = stat.unwrap_or_default();
    Ok(MemoryCounters {
        usage_bytes: d.parse("memory.current", parse_u64)?,
        limit_bytes: d.parse("memory.max", parse_limit)?.flatten(),
        swap_bytes: d.parse("memory.swap.current", parse_u64)?,
        anon_bytes,
        file_bytes,
        major_faults,
    })
}

/// The counters of a v1 directory that `known` (what the directories read before it
/// gave) does not already hold: [`CgroupCounters::or`] would drop them anyway, so on
/// a hybrid host the unified hierarchy's `cpu.stat` spares the three `cpuacct` files.
fn read_v1(
    d: &mut Dir,
    controllers: &[String],
    known: &CgroupCounters,
) -> Result<CgroupCounters, CgroupError> {
    let has = |c: &str| controllers.iter().any(|x| x == c);
    let k = &known.cpu;
    let usage_known = k.usage_ns.is_some() && k.user_ns.is_some() && k.system_ns.is_some();
    let throttling_known =
        k.periods.is_some() && k.throttled_periods.is_some() && k.throttled_ns.is_some();
    let mut out = CgroupCounters::default();
    if has("cpuacct") && !usage_known {
        out.cpu = read_v1_cpuacct(d)?;
    }
    if has("cpu") && !throttling_known {
        let throttling = d.parse("cpu.stat", |t| {
            let m = parse_flat_keyed(t)?;
            let get = |k: &str| m.get(k).copied();
            Ok([
                get("nr_periods"),
                get("nr_throttled"),
                get("throttled_time"),
            ])
        })?;
        let [periods, throttled_periods, throttled_ns] = throttling.unwrap_or_default();
        out.cpu.periods = periods;
        out.cpu.throttled_periods = throttled_periods;
        out.cpu.throttled_ns = throttled_ns;
    }
    if has("memory") && known.memory == MemoryCounters::default() {
        out.memory = read_v1_memory(d)?;
    }
    if has("blkio") && known.io == IoCounters::default() {
        out.io = read_v1_blkio(d)?;
    }
    if has("cpuset") && known.cpus.is_none() {
        // Older kernels without effective_cpus only have the configured set.
        out.cpus = match d.parse("cpuset.effective_cpus", parse_cpu_list)? {
            Some(c) => Some(c),
            None => d.parse("cpuset.cpus", parse_cpu_list)?,
        };
    }
    Ok(out)
}

fn read_v1_cpuacct(d: &mut Dir) -> Result<CpuCounters, CgroupError> {
    let usage_ns = d.parse("cpuacct.usage", parse_u64)?;
    // cpuacct.usage_user/_sys (Linux 4.7+) are in ns; cpuacct.stat only in USER_HZ ticks.
    let mut user_ns = d.parse("cpuacct.usage_user", parse_u64)?;
    let mut system_ns = d.parse("cpuacct.usage_sys", parse_u64)?;
    if user_ns.is_none() || system_ns.is_none() {
        let ticks = d.parse("cpuacct.stat", |t| {
            let m = parse_flat_keyed(t)?;
            Ok([m.get("user").copied(), m.get("system").copied()])
        })?;
        let [user, system] = ticks.unwrap_or_default();
        user_ns = user_ns.or(user.map(ticks_to_ns));
        system_ns = system_ns.or(system.map(ticks_to_ns));
    }
    Ok(CpuCounters {
        usage_ns,
        user_ns,
        system_ns,
        ..Default::default()
    })
}

fn read_v1_memory(d: &mut Dir) -> Result<MemoryCounters, CgroupError> {
    let usage_bytes = d.parse("memory.usage_in_bytes", parse_u64)?;
    let limit_bytes = d.parse("memory.limit_in_bytes", parse_limit)?.flatten();
    // memsw exists only with swap accounting; memory.stat's swap is the fallback.
    let memsw = d.parse("memory.memsw.usage_in_bytes", parse_u64)?;
    // total_* include descendant cgroups, as usage_in_bytes does; plain keys are
    // for kernels or setups without hierarchy.
    let stat = d.parse("memory.stat", |t| {
        let m = parse_flat_keyed(t)?;
        let first = |keys: &[&str]| keys.iter().find_map(|k| m.get(k).copied());
        Ok([
            first(&["total_rss", "rss", "anon"]),
            first(&["total_cache", "cache", "file"]),
            first(&["total_pgmajfault", "pgmajfault"]),
            first(&["total_swap", "swap"]),
        ])
    })?;
    let [anon_bytes, file_bytes, major_faults, stat_swap] = stat.unwrap_or_default();
    let swap_bytes = match (memsw, usage_bytes) {
        (Some(sw), Some(u)) => Some(sw.saturating_sub(u)),
        _ => stat_swap,
    };
    Ok(MemoryCounters {
        usage_bytes,
        limit_bytes,
        swap_bytes,
        anon_bytes,
        file_bytes,
        major_faults,
    })
}

fn read_v1_blkio(d: &mut Dir) -> Result<IoCounters, CgroupError> {
    // The _recursive files include descendant cgroups (libvirt may nest under the VM's).
    let mut both = |name: &str| -> Result<_, CgroupError> {
        match d.parse(&format!("{name}_recursive"), parse_blkio_throttle)? {
            Some(t) => Ok(Some(t)),
            None => d.parse(name, parse_blkio_throttle),
        }
    };
    let bytes = both("blkio.throttle.io_service_bytes")?;
    let ops = both("blkio.throttle.io_serviced")?;
    Ok(IoCounters {
        read_bytes: bytes.map(|t| t.read),
        write_bytes: bytes.map(|t| t.write),
        read_ops: ops.map(|t| t.read),
        write_ops: ops.map(|t| t.write),
        discard_bytes: bytes.map(|t| t.discard),
        discard_ops: ops.map(|t| t.discard),
    })
}

/// cpuacct.stat counts in USER_HZ ticks, sysconf(_SC_CLK_TCK) per second.
fn ticks_to_ns(ticks: u64) -> u64 {
    static HZ: OnceLock<u64> = OnceLock::new();
    let hz = *HZ.get_or_init(|| {
        // SAFETY: sysconf only reads a constant of the C library; no pointers involved.
        let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        // USER_HZ is 100 on every Linux architecture we run on; -1 means "unknown".
        u64::try_from(v).ok().filter(|&v| v > 0).unwrap_or(100)
    });
    u64::try_from(u128::from(ticks) * 1_000_000_000 / u128::from(hz)).unwrap_or(u64::MAX)
}

/// One cgroup directory being read; remembers whether a file was missing, which is
/// also what a directory removed halfway through looks like.
///
/// The directory is opened once (`O_PATH`) and its files relative to it (`openat`),
/// read into one buffer: a VM's dozen files a tick cost one walk of its path, not one
/// each, and no `statx`/`lseek` per file (as `std::fs::read_to_string` does). The
/// directory's descriptor is closed when the read is over.
struct Dir<'a> {
    path: &'a Path,
    fd: OwnedFd,
    buf: Vec<u8>,
    missed: bool,
}

impl<'a> Dir<'a> {
    fn open(path: &'a Path) -> Result<Self, CgroupError> {
        match open_dir(path) {
            Ok(fd) => Ok(Dir {
                path,
                fd,
                buf: Vec::with_capacity(4096),
                missed: false,
            }),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {
                Err(vanished(path))
            }
            Err(source) => Err(CgroupError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    fn read(&mut self, name: &str) -> Result<Option<String>, CgroupError> {
        match read_at(&self.fd, name, &mut self.buf) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.missed = true;
                Ok(None)
            }
            // PSI files of a kernel booted with psi=0 exist but refuse reads.
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(None),
            // An open file of a removed cgroup.
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Err(vanished(self.path)),
            Err(source) => Err(CgroupError::Read {
                path: self.path.join(name),
                source,
            }),
        }
    }

    /// Reads a file whose absence says nothing about the directory.
    fn read_quiet(&mut self, name: &str) -> Option<String> {
        read_at(&self.fd, name, &mut self.buf).ok()
    }

    fn parse<T>(
        &mut self,
        name: &str,
        f: impl FnOnce(&str) -> Result<T, ParseError>,
    ) -> Result<Option<T>, CgroupError> {
        let Some(text) = self.read(name)? else {
            return Ok(None);
        };
        f(&text).map(Some).map_err(|source| CgroupError::Parse {
            path: self.path.join(name),
            source,
        })
    }

    /// A missing file is only "not available" if the directory is still there.
    fn finish(self) -> Result<(), CgroupError> {
        if self.missed && !self.path.is_dir() {
            return Err(vanished(self.path));
        }
        Ok(())
    }
}

fn vanished(path: &Path) -> CgroupError {
    CgroupError::Vanished {
        path: path.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::telemetry::cgroup::PsiTotals;

    fn write(dir: &Path, files: &[(&str, &str)]) {
        fs::create_dir_all(dir).unwrap();
        for (name, text) in files {
            fs::write(dir.join(name), text).unwrap();
        }
    }

    fn v2(path: &Path) -> VmCgroup {
        VmCgroup {
            path: path.to_path_buf(),
            hierarchy: Hierarchy::V2,
        }
    }

    fn v1(path: &Path, controllers: &[&str]) -> VmCgroup {
        VmCgroup {
            path: path.to_path_buf(),
            hierarchy: Hierarchy::V1 {
                controllers: controllers.iter().map(|c| c.to_string()).collect(),
            },
        }
    }

    const PSI: &str = "some avg10=1.25 avg60=0.00 avg300=0.00 total=300\n\
                       full avg10=0.50 avg60=0.00 avg300=0.00 total=100\n";

    #[test]
    fn pure_v2() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("machine.slice/web-1");
        write(
            &d,
            &[
                (
                    "cpu.stat",
                    "usage_usec 3000\nuser_usec 2000\nsystem_usec 1000\nnice_usec 0\n\
                     nr_periods 10\nnr_throttled 4\nthrottled_usec 50\nnr_bursts 0\n",
                ),
                ("memory.current", "1048576\n"),
                ("memory.max", "max\n"),
                ("memory.swap.current", "4096\n"),
                (
                    "memory.stat",
                    "anon 1000\nfile 2000\nkernel 5\npgmajfault 7\n",
                ),
                (
                    "cpu.pressure",
                    "some avg10=0.00 avg60=0.00 avg300=0.00 total=9\n",
                ),
                ("memory.pressure", PSI),
                ("io.pressure", PSI),
                (
                    "io.stat",
                    "8:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n",
                ),
            ],
        );
        let c = read_counters(&[v2(&d)]).unwrap();
        assert_eq!(
            c.cpu,
            CpuCounters {
                usage_ns: Some(3_000_000),
                user_ns: Some(2_000_000),
                system_ns: Some(1_000_000),
                periods: Some(10),
                throttled_periods: Some(4),
                throttled_ns: Some(50_000),
            }
        );
        assert_eq!(
            c.memory,
            MemoryCounters {
                usage_bytes: Some(1 << 20),
                limit_bytes: None,
                swap_bytes: Some(4096),
                anon_bytes: Some(1000),
                file_bytes: Some(2000),
                major_faults: Some(7),
            }
        );
        let cpu_psi = c.psi.cpu.unwrap();
        assert_eq!(cpu_psi.some_total_us, 9);
        assert_eq!(
            cpu_psi.full_total_us, None,
            "older kernels: no full line for cpu"
        );
        assert_eq!(
            c.psi.io,
            Some(PsiTotals {
                some_total_us: 300,
                some_avg10: 1.25,
                full_total_us: Some(100),
                full_avg10: Some(0.5),
            })
        );
        assert_eq!(c.io.read_bytes, Some(10));
        assert_eq!(c.io.write_ops, Some(2));
    }

    /// The build machines' layout: a controller-less unified cgroup plus one v1
    /// directory per controller, each mounted on its own.
    #[test]
    fn hybrid_merges_v2_usage_with_v1_controllers() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let uni = root.join("unified/lab/web-1");
        write(
            &uni,
            &[
                (
                    "cpu.stat",
                    "usage_usec 5\nuser_usec 3\nsystem_usec 2\nnice_usec 0\n",
                ),
                ("cpu.pressure", PSI),
                ("memory.pressure", PSI),
                ("io.pressure", PSI),
            ],
        );
        let cpu = root.join("cpu/lab/web-1");
        write(
            &cpu,
            &[(
                "cpu.stat",
                "nr_periods 100\nnr_throttled 3\nthrottled_time 777\nnr_bursts 0\nburst_time 0\n",
            )],
        );
        let acct = root.join("cpuacct/lab/web-1");
        write(
            &acct,
            &[
                ("cpuacct.usage", "9999\n"),
                ("cpuacct.usage_user", "6000\n"),
                ("cpuacct.usage_sys", "3999\n"),
            ],
        );
        let mem = root.join("memory/lab/web-1");
        write(
            &mem,
            &[
                ("memory.usage_in_bytes", "8192\n"),
                ("memory.limit_in_bytes", "9223372036854771712\n"),
                ("memory.memsw.usage_in_bytes", "12288\n"),
                (
                    "memory.stat",
                    "cache 1\nrss 2\npgmajfault 3\nswap 0\ntotal_cache 10\ntotal_rss 20\n\
                     total_pgmajfault 30\ntotal_swap 0\n",
                ),
            ],
        );
        let blk = root.join("blkio/lab/web-1");
        write(
            &blk,
            &[
                (
                    "blkio.throttle.io_service_bytes_recursive",
                    "8:0 Read 4096\n8:0 Write 512\n8:0 Sync 4608\n8:0 Async 0\n8:0 Discard 0\n\
                     8:0 Total 4608\nTotal 4608\n",
                ),
                ("blkio.throttle.io_service_bytes", "Total 0\n"),
                (
                    "blkio.throttle.io_serviced",
                    "8:0 Read 1\n8:0 Write 1\nTotal 2\n",
                ),
            ],
        );
        let cgroups = [
            v1(&cpu, &["cpu"]),
            v1(&acct, &["cpuacct"]),
            v1(&mem, &["memory"]),
            v1(&blk, &["blkio"]),
            v1(&root.join("systemd/lab/web-1"), &[]),
            v2(&uni),
        ];
        fs::create_dir_all(root.join("systemd/lab/web-1")).unwrap();
        let c = read_counters(&cgroups).unwrap();
        assert_eq!(
            c.cpu,
            CpuCounters {
                usage_ns: Some(5000),
                user_ns: Some(3000),
                system_ns: Some(2000),
                periods: Some(100),
                throttled_periods: Some(3),
                throttled_ns: Some(777),
            },
            "v2 usage wins, throttling from v1 cpu"
        );
        assert_eq!(
            c.memory,
            MemoryCounters {
                usage_bytes: Some(8192),
                limit_bytes: None,
                swap_bytes: Some(4096),
                anon_bytes: Some(20),
                file_bytes: Some(10),
                major_faults: Some(30),
            }
        );
        assert!(c.psi.cpu.is_some() && c.psi.memory.is_some() && c.psi.io.is_some());
        assert_eq!(
            c.io,
            IoCounters {
                read_bytes: Some(4096),
                write_bytes: Some(512),
                read_ops: Some(1),
                write_ops: Some(1),
                discard_bytes: Some(0),
                discard_ops: Some(0),
            },
            "recursive bytes preferred, plain serviced as fallback"
        );
        // What the unified hierarchy already gave is not read again from v1 (the merge
        // would drop it): a broken cpuacct file is never opened...
        write(&acct, &[("cpuacct.usage", "not a number\n")]);
        assert_eq!(read_counters(&cgroups).unwrap(), c);
        // ...but is, and says so, when v2 lacks a usage field.
        write(&uni, &[("cpu.stat", "usage_usec 5\nuser_usec 3\n")]);
        let e = read_counters(&cgroups).unwrap_err();
        assert!(
            matches!(&e, CgroupError::Parse { path, .. } if path.ends_with("cpuacct.usage")),
            "{e}"
        );
    }

    #[test]
    fn pure_v1_with_cpuacct_stat_ticks_and_co_mounted_cpu() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("cpu,cpuacct/vm");
        write(
            &d,
            &[
                ("cpuacct.usage", "123\n"),
                ("cpuacct.stat", "user 3\nsystem 1\n"),
                (
                    "cpu.stat",
                    "nr_periods 0\nnr_throttled 0\nthrottled_time 0\n",
                ),
            ],
        );
        let mem = tmp.path().join("memory/vm");
        write(
            &mem,
            &[
                ("memory.usage_in_bytes", "100\n"),
                ("memory.limit_in_bytes", "4096\n"),
                ("memory.stat", "cache 1\nrss 2\npgmajfault 3\nswap 40\n"),
            ],
        );
        let c = read_counters(&[v1(&d, &["cpu", "cpuacct"]), v1(&mem, &["memory"])]).unwrap();
        let tick = ticks_to_ns(1);
        assert!(tick > 0);
        assert_eq!(c.cpu.usage_ns, Some(123));
        assert_eq!(c.cpu.user_ns, Some(3 * tick));
        assert_eq!(c.cpu.system_ns, Some(tick));
        assert_eq!(c.cpu.throttled_ns, Some(0));
        assert_eq!(c.memory.limit_bytes, Some(4096));
        assert_eq!(c.memory.swap_bytes, Some(40), "no memsw: memory.stat swap");
        assert_eq!(c.memory.anon_bytes, Some(2));
        assert_eq!(c.psi, PsiCounters::default(), "no PSI in v1");
        assert_eq!(c.io, IoCounters::default());
    }

    #[test]
    fn missing_files_are_not_available_not_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let c =
            read_counters(&[v2(tmp.path()), v1(tmp.path(), &["cpu", "memory", "blkio"])]).unwrap();
        assert_eq!(c, CgroupCounters::default());
        assert_eq!(read_counters(&[]).unwrap(), CgroupCounters::default());
    }

    #[test]
    fn a_vanished_directory_is_an_error_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let gone = tmp.path().join("web-1");
        let e = read_counters(&[v2(&gone)]).unwrap_err();
        assert!(
            matches!(&e, CgroupError::Vanished { path } if path == &gone),
            "{e:?}"
        );
        assert!(e.to_string().contains("web-1"));
    }

    #[test]
    fn a_malformed_file_is_an_error_naming_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), &[("memory.current", "lots\n")]);
        let e = read_counters(&[v2(tmp.path())]).unwrap_err();
        assert!(matches!(e, CgroupError::Parse { .. }), "{e:?}");
        assert!(e.to_string().contains("memory.current"), "{e}");
    }

    #[test]
    fn ticks_convert_with_user_hz() {
        // SAFETY: as in ticks_to_ns.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        assert_eq!(ticks_to_ns(hz), 1_000_000_000);
        assert_eq!(ticks_to_ns(u64::MAX), u64::MAX, "saturates");
    }
}
