//! What an operator meets before the agent runs, through the real binary:
//! `check-config` (every problem at once with file:line:column: field, the exit codes
//! scripts rely on), `--help` that teaches (an example for every command), and the
//! manual pages and completions generated from the same flag definitions.

use std::path::Path;
use std::process::{Command, Output};

fn interference(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_interference"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn check_config_lists_every_problem_with_its_place_and_exits_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("agent.toml");
    std::fs::write(
        &file,
        "[collect]\ninterval = \"50ms\"\nintervall = \"5s\"\n\n[score]\nscorer = \"magic\"\n\n\
         [policy]\non_threshold = \"high\"\n\n[[vm]]\nname = \"web-1\"\ncgroups = []\n\
         priority = \"urgent\"\n",
    )
    .expect("config");
    let out = interference(&["check-config", file.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let f = file.display();
    let expected = [
        format!("{f}:2:12: collect.interval: 50ms is below the minimum of 100ms"),
        format!("{f}:3:1: collect.intervall: unknown field \"intervall\""),
        format!("{f}:6:10: score.scorer: unknown variant \"magic\""),
        format!("{f}:9:16: policy.on_threshold: invalid type: string \"high\""),
        format!("{f}:13:11: vm[0].cgroups: at least one cgroup directory is required"),
        format!("{f}:14:12: vm[0].priority: unknown variant \"urgent\""),
    ];
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), expected.len(), "{text}");
    for (line, want) in lines.iter().zip(&expected) {
        assert!(line.starts_with(want.as_str()), "{line}\nwanted {want}");
    }
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{f}: 6 problems")), "{err}");
}

#[test]
fn check_config_of_a_valid_file_shows_the_settings_and_exits_0() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("agent.toml");
    std::fs::write(&file, "[collect]\ninterval = \"2s\"\n").expect("config");
    let path = file.to_str().expect("utf-8 path");
    let out = interference(&["check-config", path]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(text.starts_with(&format!("{path}: valid\n")), "{text}");
    // What the file says, unmarked; what it does not, marked as the default.
    assert!(text.contains("\n[collect]\ninterval = \"2s\"\n"), "{text}");
    assert!(text.contains("on_threshold = 20.0  # default"), "{text}");
    assert!(
        text.contains("# The VMs it would track on this host"),
        "{text}"
    );

    let brief = interference(&["check-config", "--brief", path]);
    assert!(brief.status.success());
    assert_eq!(stdout(&brief), format!("{path}: valid\n"));
}

#[test]
fn check_config_exit_codes_for_scripts() {
    let missing = interference(&["check-config", "/nonexistent/agent.toml"]);
    assert_eq!(missing.status.code(), Some(4), "{missing:?}");
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("cannot read /nonexistent/agent.toml")
    );
    let usage = interference(&["check-config"]);
    assert_eq!(usage.status.code(), Some(2), "{usage:?}");
}

#[test]
fn every_command_has_an_example_in_its_help() {
    let help = stdout(&interference(&["--help"]));
    let commands: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        // A command's name is indented by two; its wrapped description by more.
        .filter(|l| !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() >= 10, "{help}");
    for command in commands {
        let text = stdout(&interference(&[command, "--help"]));
        assert!(
            text.contains("Example") && text.contains(&format!("interference {command}")),
            "`interference {command} --help` has no example:\n{text}"
        );
    }
}

#[test]
fn manual_pages_and_completions_come_from_the_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = interference(&["man", dir.path().to_str().expect("utf-8 path")]);
    assert!(out.status.success(), "{out:?}");
    for page in [
        "interference.1",
        "interference-agent.1",
        "interference-check-config.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(page))
            .unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.starts_with(".ie \\n(.g .ds Aq"), "{page} is not roff");
    }
    let agent = std::fs::read_to_string(dir.path().join("interference-agent.1")).expect("page");
    assert!(
        agent.contains("dry\\-run"),
        "the agent's page lacks its flags"
    );
    assert!(
        !Path::new(&dir.path().join("interference-man.1")).exists(),
        "hidden command documented"
    );
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef interference"),
        ("fish", "complete -c interference"),
    ] {
        let script = stdout(&interference(&["completions", shell]));
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(
            script.contains("check-config"),
            "{shell} completions lack check-config"
        );
    }
}
