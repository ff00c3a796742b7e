use interference_fleet::wire::{BundleFile, BUNDLE_FORMAT};

use super::*;

fn shipped(name: &str) -> Vec<u8> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    fs::read(dir.join(name)).unwrap()
}

/// Writes a bundle of these files into the store as the controller's fetch would;
/// returns its address.
fn put(store: &ModelStore, files: &[(FileRole, &str, Vec<u8>)]) -> String {
    let manifest = BundleManifest {
        format: BUNDLE_FORMAT,
        name: "contention-lstm".into(),
        version: "t".into(),
        files: files
            .iter()
            .map(|(role, name, data)| BundleFile {
                role: *role,
                name: (*name).into(),
                sha256: sha256_hex(data),
                size: data.len() as u64,
            })
            .collect(),
    };
    let bytes = manifest.to_bytes();
    let sha = sha256_hex(&bytes);
    let dir = store.bundle_dir(&sha);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(MANIFEST), &bytes).unwrap();
    for (_, name, data) in files {
        if plain_name(&sha, name).is_ok() {
            fs::write(dir.join(name), data).unwrap();
        }
    }
    sha
}

fn good_files() -> Vec<(FileRole, &'static str, Vec<u8>)> {
    vec![
        (FileRole::Onnx, "m.onnx", shipped("contention-lstm.onnx")),
        (FileRole::Sidecar, "m.json", shipped("contention-lstm.json")),
        (
            FileRole::Golden,
            "m.golden.json",
            shipped("contention-lstm.golden.json"),
        ),
    ]
}

#[test]
fn a_whole_bundle_loads_after_its_golden_vectors() {
    let dir = tempfile::tempdir().unwrap();
    let store = ModelStore::new(dir.path());
    let sha = put(&store, &good_files());
    let m = store.load(&sha).unwrap();
    assert_eq!(m.sha, sha);
    assert_eq!(m.name, "contention-lstm");
    assert!(m.golden_worst <= crate::predict::GOLDEN_TOLERANCE);
}

#[test]
fn a_changed_byte_a_wrong_golden_output_or_a_path_as_a_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = ModelStore::new(dir.path());

    // A byte of the ONNX file changed on disk after the download.
    let sha = put(&store, &good_files());
    let onnx = store.bundle_dir(&sha).join("m.onnx");
    let mut bytes = fs::read(&onnx).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&onnx, bytes).unwrap();
    let e = store.load(&sha).unwrap_err();
    assert!(matches!(e, BundleError::Sha { .. }), "{e}");
    assert!(e.to_string().contains("file m.onnx hashes to"), "{e}");

    // Hashes right, but the model does not compute what the trainer did.
    let mut files = good_files();
    let mut golden: serde_json::Value = serde_json::from_slice(&files[2].2).unwrap();
    golden["output"][3] = serde_json::json!(golden["output"][3].as_f64().unwrap() + 5.0);
    files[2].2 = serde_json::to_vec(&golden).unwrap();
    let sha = put(&store, &files);
    let e = store.load(&sha).unwrap_err();
    assert!(matches!(e, BundleError::Golden { .. }), "{e}");
    let chain = format!("{:#}", anyhow::Error::new(e));
    assert!(chain.contains("window 3 scores"), "{chain}");

    // A manifest whose bytes are not its address.
    let sha = put(&store, &good_files());
    let other = "0".repeat(64);
    fs::rename(store.bundle_dir(&sha), store.bundle_dir(&other)).unwrap();
    let e = store.load(&other).unwrap_err();
    assert!(e.to_string().contains("the manifest hashes to"), "{e}");

    // A file name that would leave the bundle's directory.
    let mut files = good_files();
    files[1].1 = "../../etc/x.json";
    let sha = put(&store, &files);
    let e = store.load(&sha).unwrap_err();
    assert!(matches!(e, BundleError::Name { .. }), "{e}");

    let e = store.load(&"1".repeat(64)).unwrap_err();
    assert!(matches!(e, BundleError::Missing { .. }), "{e}");
}

#[test]
fn pruning_keeps_the_bundles_in_use_and_the_newest_others() {
    let dir = tempfile::tempdir().unwrap();
    let store = ModelStore::new(dir.path());
    for i in 0..5 {
        let d = store.bundle_dir(&format!("b{i}"));
        fs::create_dir_all(&d).unwrap();
        let t = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1000 + i);
        fs::File::open(&d).unwrap().set_modified(t).unwrap();
    }
    store.prune(&["b0"]);
    let mut left: Vec<String> = fs::read_dir(&store.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["b0", "b3", "b4"]);
}
