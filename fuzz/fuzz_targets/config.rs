//! The agent's TOML config as `check-config` reads it: every problem collected (the
//! decode-and-blank loop of `toml_file::parse_all`), and a valid file's settings shown.
//! Never a panic, and the loop ends.
#![no_main]

use std::path::Path;

use interference::config::{toml_file, Config};
use interference::inventory::Mounts;
use libfuzzer_sys::fuzz_target;

const MOUNTINFO: &str = "31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n\
                         32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n\
                         41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";

fuzz_target!(|text: &str| {
    let Ok(mounts) = Mounts::parse(MOUNTINFO, Path::new("mountinfo")) else {
        return;
    };
    match Config::parse_all(text, Path::new("agent.toml"), &mounts) {
        Ok(config) => {
            if let Ok(table) = toml::Table::try_from(&config) {
                let _ = toml_file::render_marking_defaults(&table, &toml_file::fields_set(text));
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
