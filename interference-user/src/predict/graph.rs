//! Checks on the ONNX graph itself (before tract sees it), and the one rewrite the agent
//! makes to it.
//!
//! The checks read the protobuf: which operators, the LSTM attributes, the declared
//! input and output. The rewrite gives every LSTM explicit zero initial states sized
//! from the batch dimension at run time. ONNX defines missing `initial_h`/`initial_c`
//! as zeros, which is what a plain trainer export relies on, but tract-onnx 0.23 builds
//! those zeros as constants of the batch size and panics when the batch is symbolic
//! (`UndeterminedSymbol("N")` in its LSTM expansion). The explicit
//! `Shape -> Gather -> Concat -> ConstantOfShape` zeros mean the same thing to ONNX and
//! let tract keep one plan for any number of pairs.

use tract_onnx::pb;

use super::error::ModelError;
use super::sidecar::Sidecar;

/// ONNX `TensorProto.DataType.FLOAT`.
const ONNX_FLOAT: i32 = 1;
/// ONNX `TensorProto.DataType.INT64`.
const ONNX_INT64: i32 = 7;
/// LSTM input slots (ONNX operator spec): X, W, R, B, sequence_lens, initial_h, initial_c.
const LSTM_INITIAL_H: usize = 5;
const LSTM_INITIAL_C: usize = 6;

/// The graph must hold the sidecar's LSTM layers, in the form tract runs faithfully:
/// tract-onnx 0.23 reads only `layout` of the LSTM attributes, so a reverse or bidirectional
/// direction, custom activations, clipping or coupled gates would run as a plain
/// forward LSTM and give silently wrong scores.
pub(super) fn check_lstm_nodes(
    graph: &pb::GraphProto,
    sidecar: &Sidecar,
    origin: &str,
) -> Result<(), ModelError> {
    let lstms: Vec<&pb::NodeProto> = graph.node.iter().filter(|n| n.op_type == "LSTM").collect();
    if lstms.is_empty() {
        let mut ops: Vec<&str> = vec![];
        for n in &graph.node {
            if !ops.contains(&n.op_type.as_str()) {
                ops.push(&n.op_type);
            }
        }
        return Err(ModelError::NotLstm {
            origin: origin.to_string(),
            ops: ops.join(", "),
        });
    }
    let unsupported = |what: String| ModelError::Unsupported {
        origin: origin.to_string(),
        what,
    };
    if lstms.len() != sidecar.architecture.layers {
        return Err(unsupported(format!(
            "{} LSTM nodes, the sidecar says {} layers",
            lstms.len(),
            sidecar.architecture.layers
        )));
    }
    for node in lstms {
        let name = if node.name.is_empty() {
            "LSTM"
        } else {
            &node.name
        };
        for attr in &node.attribute {
            let ok = match attr.name.as_str() {
                "hidden_size" => attr.i == sidecar.architecture.hidden as i64,
                "direction" => attr.s == b"forward",
                "activations" => {
                    let defaults: [&[u8]; 3] = [b"Sigmoid", b"Tanh", b"Tanh"];
                    attr.strings.len() == 3
                        && attr
                            .strings
                            .iter()
                            .zip(defaults)
                            .all(|(a, d)| a.as_slice() == d)
                }
                "input_forget" => attr.i == 0,
                "layout" => true,
                _ => false,
            };
            if !ok {
                let value = match attr.name.as_str() {
                    "direction" => format!("{:?}", String::from_utf8_lossy(&attr.s)),
                    "activations" => format!(
                        "{:?}",
                        attr.strings
                            .iter()
                            .map(|s| String::from_utf8_lossy(s))
                            .collect::<Vec<_>>()
                    ),
                    "hidden_size" => format!(
                        "{} (the sidecar says hidden {})",
                        attr.i, sidecar.architecture.hidden
                    ),
                    _ => "set".to_string(),
                };
                return Err(unsupported(format!(
                    "{name}: attribute {} is {value}; the agent runs forward LSTMs with the \
                     default activations and no clipping",
                    attr.name
                )));
            }
        }
    }
    Ok(())
}

/// The graph's declared input and output: names, f32, `[batch, T, F]` with a symbolic
/// batch. A fixed batch would make the agent run once per pair.
pub(super) fn check_declared_io(
    graph: &pb::GraphProto,
    sidecar: &Sidecar,
    origin: &str,
) -> Result<(), ModelError> {
    let input_err = |what: String| ModelError::Input {
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
    let (t, f) = (sidecar.window, sidecar.features.len());
    let shape_ok = match dims.as_slice() {
        [None, Some(dt), Some(df)] => *dt == t as i64 && *df == f as i64,
        _ => false,
    };
    if !shape_ok {
        let fixed_batch = matches!(dims.first(), Some(Some(_)));
        return Err(input_err(format!(
            "shape is {}, expected [N, {t}, {f}] (symbolic batch, window, features){}",
            describe_dims(&dims),
            if fixed_batch {
                "; a fixed batch would make the agent run the model once per pair"
            } else {
                ""
            }
        )));
    }
    let outputs: Vec<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
    if outputs != [sidecar.output.name.as_str()] {
        return Err(ModelError::Output {
            origin: origin.to_string(),
            what: format!(
                "names are {outputs:?}, the sidecar says [{:?}]",
                sidecar.output.name
            ),
        });
    }
    Ok(())
}

/// Element type and dimensions (`None` for a symbolic or unknown one) of a declared value.
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
        .map(|d| d.map_or("?".to_string(), |v| v.to_string()))
        .collect();
    format!("[{}]", d.join(", "))
}

/// Feeds every LSTM that lacks them explicit zero `initial_h` and `initial_c` of shape
/// `[num_directions, batch, hidden]` (layout 0) or `[batch, num_directions, hidden]`
/// (layout 1), the batch read from the LSTM's own input at run time.
pub(super) fn add_zero_initial_states(graph: &mut pb::GraphProto) {
    let lstm_at: Vec<usize> = (0..graph.node.len())
        .filter(|&i| graph.node[i].op_type == "LSTM")
        .collect();
    // From the back, so that inserting before one node does not move the others.
    for (k, &at) in lstm_at.iter().enumerate().rev() {
        let node = &graph.node[at];
        let has = |slot: usize| node.input.get(slot).is_some_and(|s| !s.is_empty());
        if has(LSTM_INITIAL_H) && has(LSTM_INITIAL_C) {
            continue;
        }
        let int_attr = |name: &str| node.attribute.iter().find(|a| a.name == name).map(|a| a.i);
        let Some(hidden) = int_attr("hidden_size") else {
            continue;
        };
        let batch_first = int_attr("layout") == Some(1);
        let directions = node
            .attribute
            .iter()
            .find(|a| a.name == "direction")
            .map_or(1, |a| if a.s == b"bidirectional" { 2 } else { 1 });
        let Some(x) = node.input.first().cloned() else {
            continue;
        };
        let p = format!("interference.lstm{k}.zero_state");
        let name = |s: &str| format!("{p}.{s}");
        let int64 = |n: &str, v: i64| pb::TensorProto {
            name: name(n),
            dims: vec![1],
            data_type: ONNX_INT64,
            int64_data: vec![v],
            ..Default::default()
        };
        let batch_axis = if batch_first { 0 } else { 1 };
        graph.initializer.push(int64("batch_axis", batch_axis));
        graph.initializer.push(int64("directions", directions));
        graph.initializer.push(int64("hidden", hidden));
        let op = |op_type: &str, inputs: &[String], output: String| pb::NodeProto {
            name: output.clone(),
            op_type: op_type.to_string(),
            input: inputs.to_vec(),
            output: vec![output],
            ..Default::default()
        };
        let mut concat = op(
            "Concat",
            &if batch_first {
                [name("batch"), name("directions"), name("hidden")]
            } else {
                [name("directions"), name("batch"), name("hidden")]
            },
            name("shape"),
        );
        concat.attribute.push(pb::AttributeProto {
            name: "axis".to_string(),
            r#type: pb::attribute_proto::AttributeType::Int as i32,
            i: 0,
            ..Default::default()
        });
        // An explicit float32 zero: ONNX's default for a missing `value` is one, but
        // tract-onnx 0.23 defaults to an f64 zero, which the LSTM then refuses.
        let mut zeros = op("ConstantOfShape", &[name("shape")], name("zeros"));
        zeros.attribute.push(pb::AttributeProto {
            name: "value".to_string(),
            r#type: pb::attribute_proto::AttributeType::Tensor as i32,
            t: Some(pb::TensorProto {
                dims: vec![1],
                data_type: ONNX_FLOAT,
                float_data: vec![0.0],
                ..Default::default()
            }),
            ..Default::default()
        });
        let nodes = [
            op("Shape", &[x], name("x_shape")),
            op(
                "Gather",
                &[name("x_shape"), name("batch_axis")],
                name("batch"),
            ),
            concat,
            zeros,
        ];
        let lstm = &mut graph.node[at];
        if lstm.input.len() <= LSTM_INITIAL_C {
            lstm.input.resize(LSTM_INITIAL_C + 1, String::new());
        }
        for slot in [LSTM_INITIAL_H, LSTM_INITIAL_C] {
            if lstm.input[slot].is_empty() {
                lstm.input[slot] = name("zeros");
            }
        }
        graph.node.splice(at..at, nodes);
    }
}
