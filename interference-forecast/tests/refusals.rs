//! docs/forecast.md, section 5: a model is refused, with the file and the fault named,
//! when its sha256 is not the sidecar's, when its declared input or output is not the
//! sidecar's `[N, 36, 12] -> [N, 12]`, or when the sidecar's features, lags or clock
//! are not what this crate computes. The bad fixtures are made from the real model in
//! a temporary directory.

mod common;

use std::path::{Path, PathBuf};

use interference_forecast::model::{builtin_onnx, builtin_sidecar_json};
use interference_forecast::{DemandModel, ModelError};
use prost::Message;
use sha2::{Digest, Sha256};
use tract_onnx::pb;
use tract_onnx::prelude::Framework;

/// Writes `onnx` and `sidecar` (its sha256 set to the bytes' own unless `keep_sha`)
/// into a fresh directory; returns the directory and the sidecar's path.
fn fixture(
    onnx: &[u8],
    mut sidecar: serde_json::Value,
    keep_sha: bool,
) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    if !keep_sha {
        let sha: String = Sha256::digest(onnx)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        sidecar["onnx_sha256"] = sha.into();
    }
    std::fs::write(dir.path().join("demand-forecast.onnx"), onnx).expect("write onnx");
    let path = dir.path().join("demand-forecast.json");
    std::fs::write(&path, sidecar.to_string()).expect("write sidecar");
    (dir, path)
}

fn sidecar() -> serde_json::Value {
    serde_json::from_slice(builtin_sidecar_json()).expect("sidecar JSON")
}

fn refused(path: &Path) -> (ModelError, String) {
    let e = DemandModel::open(path).expect_err("the model must be refused");
    let text = e.to_string();
    (e, text)
}

/// The real graph with `edit` applied, re-encoded.
fn edited(edit: impl FnOnce(&mut pb::GraphProto)) -> Vec<u8> {
    let mut proto = tract_onnx::onnx()
        .proto_model_for_read(&mut &builtin_onnx()[..])
        .expect("the real model decodes");
    edit(proto.graph.as_mut().expect("graph"));
    proto.encode_to_vec()
}

fn tensor_type(v: &mut pb::ValueInfoProto) -> &mut pb::type_proto::Tensor {
    match v.r#type.as_mut().and_then(|t| t.value.as_mut()) {
        Some(pb::type_proto::Value::TensorType(t)) => t,
        _ => panic!("the real model declares tensor types"),
    }
}

fn set_dim(v: &mut pb::ValueInfoProto, axis: usize, dim: pb::tensor_shape_proto::dimension::Value) {
    let shape = tensor_type(v).shape.as_mut().expect("declared shape");
    shape.dim[axis].value = Some(dim);
}

use pb::tensor_shape_proto::dimension::Value as DimValue;

#[test]
fn the_real_model_from_a_directory_loads() {
    let (_dir, path) = fixture(builtin_onnx(), sidecar(), true);
    let m = DemandModel::open(&path).expect("the shipped files load");
    assert!(m.origin().ends_with("demand-forecast.onnx"));
}

#[test]
fn a_wrong_sha256_is_refused_naming_the_file() {
    let mut onnx = builtin_onnx().to_vec();
    let last = onnx.len() - 1;
    onnx[last] ^= 1;
    let (_dir, path) = fixture(&onnx, sidecar(), true);
    let (e, text) = refused(&path);
    assert!(matches!(e, ModelError::Checksum { .. }), "{text}");
    assert!(
        text.contains("demand-forecast.onnx") && text.contains("sha256"),
        "{text}"
    );
}

#[test]
fn a_truncated_model_with_a_matching_sha_is_not_onnx() {
    let onnx = &builtin_onnx()[..1000];
    let (_dir, path) = fixture(onnx, sidecar(), false);
    let (e, text) = refused(&path);
    assert!(
        matches!(e, ModelError::NotOnnx { .. } | ModelError::Input { .. }),
        "{text}"
    );
    assert!(text.contains("demand-forecast.onnx"), "{text}");
}

#[test]
fn a_missing_model_file_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("demand-forecast.json");
    std::fs::write(&path, builtin_sidecar_json()).expect("write");
    let (e, text) = refused(&path);
    assert!(matches!(e, ModelError::Read { .. }), "{text}");
    assert!(text.contains("demand-forecast.onnx"), "{text}");
}

#[test]
fn a_declared_input_of_another_shape_is_refused() {
    let onnx = edited(|g| set_dim(&mut g.input[0], 1, DimValue::DimValue(35)));
    let (_dir, path) = fixture(&onnx, sidecar(), false);
    let (e, text) = refused(&path);
    assert!(matches!(e, ModelError::Input { .. }), "{text}");
    assert!(
        text.contains("[N, 35, 12]") && text.contains("demand-forecast.onnx"),
        "{text}"
    );

    let onnx = edited(|g| set_dim(&mut g.input[0], 0, DimValue::DimValue(1)));
    let (_dir, path) = fixture(&onnx, sidecar(), false);
    let (_, text) = refused(&path);
    assert!(
        text.contains("[1, 36, 12]") && text.contains("symbolic batch"),
        "{text}"
    );
}

#[test]
fn a_declared_output_of_another_shape_or_name_is_refused() {
    let onnx = edited(|g| set_dim(&mut g.output[0], 1, DimValue::DimValue(1)));
    let (_dir, path) = fixture(&onnx, sidecar(), false);
    let (e, text) = refused(&path);
    assert!(matches!(e, ModelError::Output { .. }), "{text}");
    assert!(text.contains("[N, 1]"), "{text}");

    let mut sc = sidecar();
    sc["output"]["name"] = "forecast".into();
    let (_dir, path) = fixture(builtin_onnx(), sc, true);
    let (_, text) = refused(&path);
    assert!(
        text.contains("\"scaled_forecast\"") && text.contains("\"forecast\""),
        "{text}"
    );
}

#[test]
fn another_input_name_or_element_type_is_refused() {
    let mut sc = sidecar();
    sc["input"]["name"] = "x".into();
    let (_dir, path) = fixture(builtin_onnx(), sc, true);
    let (e, text) = refused(&path);
    assert!(
        matches!(e, ModelError::Input { .. }) && text.contains("\"inputs\""),
        "{text}"
    );

    // float64 (11) declared for the input.
    let onnx = edited(|g| tensor_type(&mut g.input[0]).elem_type = 11);
    let (_dir, path) = fixture(&onnx, sidecar(), false);
    let (_, text) = refused(&path);
    assert!(text.contains("element type is 11"), "{text}");
}

#[test]
fn a_graph_that_computes_another_output_is_refused_by_tract_typing() {
    // The declared output says [N, 12], but the last node's output is one member's
    // hidden layer ([N, 256]) renamed: tract's typed output is checked too.
    let onnx = edited(|g| {
        let relu = g
            .node
            .iter()
            .position(|n| n.op_type == "Relu")
            .expect("a Relu");
        let out_name = g.output[0].name.clone();
        g.node.truncate(relu + 1);
        g.node[relu].output[0] = out_name;
    });
    let (_dir, path) = fixture(&onnx, sidecar(), false);
    let (e, text) = refused(&path);
    assert!(
        matches!(e, ModelError::Output { .. } | ModelError::Tract { .. }),
        "{text}"
    );
    assert!(text.contains("demand-forecast.onnx"), "{text}");
}

#[test]
fn sidecar_features_lags_clock_or_horizons_other_than_the_contract_are_refused() {
    for (pointer, value, field) in [
        (
            "/features/11",
            serde_json::json!("workload_cpu"),
            "features",
        ),
        ("/lags/35", serde_json::json!(-13), "lags"),
        ("/clock/day_steps", serde_json::json!(96), "clock.day_steps"),
        ("/scale_floor", serde_json::json!(0.01), "scale_floor"),
        // Other horizons: output column k would not be k + 1 steps ahead.
        (
            "/horizons_steps/11",
            serde_json::json!(24),
            "horizons_steps",
        ),
        (
            "/horizons_steps",
            serde_json::json!([1, 2, 3, 4, 5, 6]),
            "horizons",
        ),
    ] {
        let mut sc = sidecar();
        *sc.pointer_mut(pointer).expect("field") = value;
        let (_dir, path) = fixture(builtin_onnx(), sc, true);
        let (e, text) = refused(&path);
        assert!(matches!(e, ModelError::Sidecar(_)), "{pointer}: {text}");
        assert!(
            text.contains(field) && text.contains("demand-forecast.json"),
            "{pointer}: {text}"
        );
    }
}
