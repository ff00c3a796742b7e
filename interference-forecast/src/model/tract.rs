//! The demand model run by tract-onnx (0.23.9, the plain ONNX operators only).
//!
//! Prepare does the staged work once: read the protobuf, check the declared input and
//! output against the sidecar (names, float32, `[N, 36, 12] -> [N, 12]` with a symbolic
//! batch), type the graph with the batch left symbolic, check the typed output, optimise
//! and plan. One plan then serves any number of VMs. tract unwraps in places on graphs
//! it does not support; a model file must not crash the agent, so a panic while
//! preparing is a refused model.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use tract_onnx::pb;
use tract_onnx::prelude::{
    Datum, DatumExt, Framework, InferenceModelExt, IntoRunnable, IntoTValue, Symbol, TDim, TValue,
    TVec, Tensor, TypedSimplePlan,
};

use super::error::{ModelError, RunError};
use super::sidecar::ForecastSidecar;
use super::{ModelRuntime, PreparedModel};
use crate::contract::{FEATURE_COUNT, HORIZON_STEPS, WINDOW};

/// ONNX `TensorProto.DataType.FLOAT`.
const ONNX_FLOAT: i32 = 1;

/// tract, single-threaded, on the calling thread.
#[derive(Debug, Clone, Copy, Default)]
pub struct TractRuntime;

struct TractModel {
    origin: String,
    plan: Arc<TypedSimplePlan>,
}

impl ModelRuntime for TractRuntime {
    fn prepare(
        &self,
        onnx: &[u8],
        sidecar: &ForecastSidecar,
        origin: &str,
    ) -> Result<Box<dyn PreparedModel>, ModelError> {
        let proto = tract_onnx::onnx()
            .proto_model_for_read(&mut &onnx[..])
            .map_err(|e| ModelError::NotOnnx {
                origin: origin.to_string(),
                reason: format!("{e:#}"),
            })?;
        let graph = proto
            .graph
            .as_ref()
            .filter(|g| !g.node.is_empty())
            .ok_or_else(|| ModelError::NotOnnx {
                origin: origin.to_string(),
                reason: "no graph, or a graph without nodes".to_string(),
            })?;
        check_declared_io(graph, sidecar, origin)?;
        let plan = std::panic::catch_unwind(AssertUnwindSafe(|| plan(&proto, sidecar, origin)))
            .unwrap_or_else(|panic| {
                let reason = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown panic".to_string());
                Err(ModelError::Tract {
                    origin: origin.to_string(),
                    stage: "prepare the graph (tract panicked)",
                    reason,
                })
            })?;
        Ok(Box::new(TractModel {
            origin: origin.to_string(),
            plan,
        }))
    }
}

impl PreparedModel for TractModel {
    fn run(&self, normalised: &[f32], n: usize) -> Result<Vec<f32>, RunError> {
        let err = |e: tract_onnx::prelude::TractError| RunError {
            origin: self.origin.clone(),
            rows: n,
            reason: format!("{e:#}"),
        };
        let tensor = Tensor::from_shape(&[n, WINDOW, FEATURE_COUNT], normalised).map_err(err)?;
        let inputs: TVec<TValue> = std::iter::once(tensor.into_tvalue()).collect();
        let outputs = self.plan.run(inputs).map_err(err)?;
        let out = outputs.first().ok_or_else(|| RunError {
            origin: self.origin.clone(),
            rows: n,
            reason: "the run returned no output".to_string(),
        })?;
        if out.shape() != [n, HORIZON_STEPS] {
            return Err(RunError {
                origin: self.origin.clone(),
                rows: n,
                reason: format!(
                    "output shape {:?}, expected [{n}, {HORIZON_STEPS}]",
                    out.shape()
                ),
            });
        }
        let view = out.try_as_plain_ram().map_err(err)?;
        Ok(view.as_slice::<f32>().map_err(err)?.to_vec())
    }
}

/// Element type and dimensions (`None`: symbolic or unknown) of a declared value.
fn declared(v: &pb::ValueInfoProto) -> Option<(i32, Vec<Option<i64>>)> {
    use pb::tensor_shape_proto::dimension::Value;
    let pb::type_proto::Value::TensorType(tensor) = v.r#type.as_ref()?.value.as_ref()?;
    let dims = tensor
        .shape
        .as_ref()?
        .dim
        .iter()
        .map(|d| match d.value {
            Some(Value::DimValue(v)) => Some(v),
            _ => None,
        })
        .collect();
    Some((tensor.elem_type, dims))
}

fn describe_dims(dims: &[Option<i64>]) -> String {
    let d: Vec<String> = dims
        .iter()
        .map(|d| d.map_or("N".to_string(), |v| v.to_string()))
        .collect();
    format!("[{}]", d.join(", "))
}

/// The graph's declared input and output must be the sidecar's.
fn check_declared_io(
    graph: &pb::GraphProto,
    sidecar: &ForecastSidecar,
    origin: &str,
) -> Result<(), ModelError> {
    let input_err = |what: String| ModelError::Input {
        origin: origin.to_string(),
        what,
    };
    let output_err = |what: String| ModelError::Output {
        origin: origin.to_string(),
        what,
    };
    let inputs: Vec<&pb::ValueInfoProto> = graph
        .input
        .iter()
        .filter(|i| !graph.initializer.iter().any(|init| init.name == i.name))
        .collect();
    let [input] = inputs.as_slice() else {
        let names: Vec<&str> = inputs.iter().map(|i| i.name.as_str()).collect();
        return Err(input_err(format!(
            "count is {} ({names:?}), expected one, {:?}",
            inputs.len(),
            sidecar.input.name
        )));
    };
    if input.name != sidecar.input.name {
        return Err(input_err(format!(
            "is named {:?}, the sidecar says {:?}",
            input.name, sidecar.input.name
        )));
    }
    let (elem, dims) =
        declared(input).ok_or_else(|| input_err("declares no tensor shape".into()))?;
    if elem != ONNX_FLOAT {
        return Err(input_err(format!(
            "element type is {elem}, expected float32 (1)"
        )));
    }
    let (t, f) = (WINDOW as i64, FEATURE_COUNT as i64);
    if !matches!(dims.as_slice(), [None, Some(dt), Some(df)] if *dt == t && *df == f) {
        return Err(input_err(format!(
            "shape is {}, expected [N, {t}, {f}] (symbolic batch: all VMs in one run)",
            describe_dims(&dims)
        )));
    }
    let [output] = graph.output.as_slice() else {
        let names: Vec<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
        return Err(output_err(format!(
            "names are {names:?}, the sidecar says [{:?}]",
            sidecar.output.name
        )));
    };
    if output.name != sidecar.output.name {
        return Err(output_err(format!(
            "is named {:?}, the sidecar says {:?}",
            output.name, sidecar.output.name
        )));
    }
    let (elem, dims) =
        declared(output).ok_or_else(|| output_err("declares no tensor shape".into()))?;
    if elem != ONNX_FLOAT {
        return Err(output_err(format!(
            "element type is {elem}, expected float32 (1)"
        )));
    }
    let k = HORIZON_STEPS as i64;
    if !matches!(dims.as_slice(), [None, Some(dk)] if *dk == k) {
        return Err(output_err(format!(
            "shape is {}, expected [N, {k}] (one column per horizon)",
            describe_dims(&dims)
        )));
    }
    Ok(())
}

/// Parse, type with a symbolic batch, check the typed output, optimise, plan.
fn plan(
    proto: &pb::ModelProto,
    sidecar: &ForecastSidecar,
    origin: &str,
) -> Result<Arc<TypedSimplePlan>, ModelError> {
    let tract_err = |stage: &'static str| {
        move |e: tract_onnx::prelude::TractError| ModelError::Tract {
            origin: origin.to_string(),
            stage,
            reason: format!("{e:#}"),
        }
    };
    let mut model = tract_onnx::onnx()
        .model_for_proto_model(proto)
        .map_err(tract_err("parse the graph"))?;
    let batch: Symbol = model.symbols.sym(sidecar.batch_symbol());
    let shape = [
        TDim::from(batch.clone()),
        TDim::from(WINDOW as i64),
        TDim::from(FEATURE_COUNT as i64),
    ];
    model
        .set_input_fact(0, f32::fact(shape).into())
        .map_err(tract_err("set the input shape"))?;
    let typed = model.into_typed().map_err(tract_err("type the graph"))?;
    let out_fact = typed.output_fact(0).map_err(tract_err("type the output"))?;
    let expected = [TDim::from(batch), TDim::from(HORIZON_STEPS as i64)];
    if out_fact.datum_type != f32::datum_type() || out_fact.shape.dims() != expected {
        return Err(ModelError::Output {
            origin: origin.to_string(),
            what: format!(
                "is typed {:?} {:?} by tract, expected f32 [{}, {HORIZON_STEPS}]",
                out_fact.datum_type,
                out_fact.shape.dims(),
                sidecar.batch_symbol()
            ),
        });
    }
    typed
        .into_optimized()
        .map_err(tract_err("optimise the graph"))?
        .into_runnable()
        .map_err(tract_err("plan the graph"))
}
