//! Helpers shared by the integration tests: the repository's files and the Azure trace.

#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};

use interference_forecast::replay::trace::TraceReader;

/// A file of the repository, from the crate's directory.
pub fn repo_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

/// The Azure trace the model was trained on (`../shared/traces/`, or the directory
/// `INTERFERENCE_TRACES` names). A test that needs it fails when it is missing: it
/// cannot run, and DESIGN.md says such a test must not pass.
pub fn azure_trace() -> PathBuf {
    let dir = std::env::var_os("INTERFERENCE_TRACES")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_file("../shared/traces"));
    let path = dir.join("azure-v1-cpu-avg-5min-train.csv.gz");
    assert!(
        path.exists(),
        "{} is missing: this test rebuilds rollups from it (set INTERFERENCE_TRACES to the \
         directory that holds it)",
        path.display()
    );
    path
}

/// A whole trace in memory: minutes, VM names, values per row (`None`: empty cell).
pub struct Trace {
    pub minutes: Vec<i64>,
    pub vms: Vec<String>,
    pub rows: Vec<Vec<Option<f64>>>,
}

pub fn load_trace(path: &Path) -> Trace {
    let mut r = TraceReader::open(path).expect("trace opens");
    let vms = r.vms().to_vec();
    let (mut minutes, mut rows) = (Vec::new(), Vec::new());
    while let Some(row) = r.next_row().expect("trace row") {
        minutes.push(row.minute);
        rows.push(row.values);
    }
    Trace { minutes, vms, rows }
}

/// The text of a file, gunzipped when its name ends in `.gz`.
pub fn read_text(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if path.extension().is_some_and(|e| e == "gz") {
        let mut s = String::new();
        flate2::read::MultiGzDecoder::new(&bytes[..])
            .read_to_string(&mut s)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        s
    } else {
        String::from_utf8(bytes).expect("utf-8")
    }
}

/// The golden vectors of the model.
pub fn golden() -> serde_json::Value {
    let text = read_text(&repo_file("models/demand-forecast.golden.json"));
    serde_json::from_str(&text).expect("golden JSON")
}

pub fn f64s(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}
