//! What the edges of both binaries (`interference`, `interference-controller`) share:
//! how log lines are written, and the manual pages and shell completions generated
//! from a binary's own clap definitions, so they never drift from the flags they
//! describe (the Debian packages ship what `scripts/package.sh` generates with these).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use clap::CommandFactory;

/// How log lines are written (stderr; the journal under systemd).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One line per event, its fields as `key=value` after the message.
    #[default]
    Text,
    /// One JSON object per line, the fields at the top level beside "timestamp",
    /// "level" and "message", for a log pipeline.
    Json,
}

/// `--log-format`, for both binaries (flattened into their top-level arguments).
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Log lines as text (one line per event, `key=value` fields) or one JSON object
    /// per line for a log pipeline.
    #[arg(
        long,
        value_enum,
        default_value_t,
        global = true,
        env = "INTERFERENCE_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
}

/// Logs to stderr at `filter` (RUST_LOG wins when set), in `format`; colours only on a
/// terminal.
pub fn init_logging(format: LogFormat, filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match format {
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
}

/// `completions SHELL`: the script on stdout.
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `man DIR`: a page for the binary and one for each of its commands.
#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Where to write the pages (created if missing).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

/// Writes `C`'s completion script for `args.shell` to stdout. Into memory first:
/// clap_complete panics on a write error, and `| head` is not an error.
pub fn completions<C: CommandFactory>(args: &CompletionsArgs) -> std::io::Result<()> {
    let mut cmd = C::command();
    let name = cmd.get_name().to_owned();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, name, &mut script);
    std::io::stdout().write_all(&script)
}

/// Writes `C`'s manual pages into `args.dir`.
pub fn man<C: CommandFactory>(args: &ManArgs) -> std::io::Result<()> {
    std::fs::create_dir_all(&args.dir)?;
    clap_mangen::generate_to(C::command(), Path::new(&args.dir))
}
