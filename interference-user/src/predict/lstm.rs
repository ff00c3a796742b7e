//! The LSTM scorer: the shipped Contention Score model (ONNX), run by tract.
//!
//! Loading does the expensive and the risky work once, at start-up: the ONNX bytes must
//! hash to the sidecar's sha256, the graph must hold an LSTM that tract runs as ONNX
//! defines it, and its input and output must be the sidecar's `[N, T, F]` and `[N, 1]`.
//! The batch dimension stays symbolic through tract's optimiser, so one prepared plan
//! scores any number of pairs. Normalisation is not in the graph (the sidecar carries
//! it) and is applied here, into buffers kept between ticks.
//!
//! Batches run in chunks of at most [`DEFAULT_MAX_BATCH`] windows: measured on the
//! build machine (benches/scoring.rs), one run over all 4950 pairs of a 100-VM host
//! spends about half its time in page faults and copies of its 15 MB intermediates
//! (glibc hands blocks that size back to the kernel after each run), while runs of 512
//! windows keep them in cache and in the heap: about 40 ms of CPU instead of 60-65 for
//! the 4950. The outputs are the same either way (the tests check it).

use std::fs;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use tract_onnx::pb;
use tract_onnx::prelude::{
    Datum, DatumExt, Framework, InferenceModelExt, IntoRunnable, IntoTValue, Symbol, TDim, TValue,
    TVec, Tensor, TypedSimplePlan,
};

use super::error::{ModelError, PredictError};
use super::graph::{add_zero_initial_states, check_declared_io, check_lstm_nodes};
use super::sidecar::Sidecar;
use super::{check_batch, PairScorer};

/// Windows per tract run; see the module comment. [`LstmScorer::with_max_batch`]
/// changes it.
pub const DEFAULT_MAX_BATCH: usize = 512;

/// Normalised input buffers kept between runs: a full chunk and the last, shorter one.
const KEPT_BUFFERS: usize = 2;

/// A loaded, validated and optimised LSTM, ready to score batches of pair windows.
#[derive(Debug)]
pub struct LstmScorer {
    sidecar: Sidecar,
    origin: String,
    plan: Arc<TypedSimplePlan>,
    max_batch: usize,
    /// Normalised inputs of the last runs, reused when a chunk has the same shape (the
    /// pair count changes only when VMs come or go).
    buffers: Mutex<Vec<Arc<Tensor>>>,
}

impl LstmScorer {
    /// Loads `onnx_path` as the model that `sidecar_path` describes.
    pub fn load(onnx_path: &Path, sidecar_path: &Path) -> Result<Self, PredictError> {
        let sidecar = Sidecar::load(sidecar_path)?;
        let origin = onnx_path.display().to_string();
        let onnx = fs::read(onnx_path).map_err(|source| ModelError::Read {
            origin: origin.clone(),
            source,
        })?;
        Ok(Self::new(&onnx, sidecar, &origin)?)
    }

    /// Loads the model a sidecar describes, from its `model_file` next to the sidecar.
    pub fn open(sidecar_path: &Path) -> Result<Self, PredictError> {
        let sidecar = Sidecar::load(sidecar_path)?;
        let dir = sidecar_path.parent().unwrap_or(Path::new("."));
        let onnx_path = dir.join(&sidecar.model_file);
        let origin = onnx_path.display().to_string();
        let onnx = fs::read(&onnx_path).map_err(|source| ModelError::Read {
            origin: origin.clone(),
            source,
        })?;
        Ok(Self::new(&onnx, sidecar, &origin)?)
    }

    /// Loads a model held in memory (the binary embeds the default one with
    /// `include_bytes!`); `origin` names it in errors.
    pub fn from_bytes(
        onnx: &[u8],
        sidecar_json: &[u8],
        origin: &str,
    ) -> Result<Self, PredictError> {
        let sidecar = Sidecar::from_slice(sidecar_json, &format!("{origin} (sidecar)"))?;
        Ok(Self::new(onnx, sidecar, origin)?)
    }

    fn new(onnx: &[u8], sidecar: Sidecar, origin: &str) -> Result<Self, ModelError> {
        check_sha256(onnx, &sidecar, origin)?;
        let mut proto = tract_onnx::onnx()
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
        check_lstm_nodes(graph, &sidecar, origin)?;
        check_declared_io(graph, &sidecar, origin)?;
        if let Some(graph) = proto.graph.as_mut() {
            add_zero_initial_states(graph);
        }
        // tract unwraps in places on graphs it does not support; a model file must not
        // be able to crash the agent, so a panic while preparing is a refused model.
        let plan = std::panic::catch_unwind(AssertUnwindSafe(|| prepare(&proto, &sidecar, origin)))
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
        Ok(Self {
            sidecar,
            origin: origin.to_string(),
            plan,
            max_batch: DEFAULT_MAX_BATCH,
            buffers: Mutex::new(Vec::new()),
        })
    }

    /// At most `windows` windows per tract run (at least 1; `usize::MAX`: all in one).
    pub fn with_max_batch(mut self, windows: usize) -> Self {
        self.max_batch = windows.max(1);
        self
    }

    pub fn sidecar(&self) -> &Sidecar {
        &self.sidecar
    }

    /// Where the ONNX model came from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Runs already-normalised windows (`[n, T, F]` row-major), as golden vectors hold
    /// them. Outputs are the model's, unclamped.
    pub fn run_normalised(&self, normalised: &[f32], n: usize) -> Result<Vec<f32>, PredictError> {
        let (t, f) = (self.sidecar.window, self.sidecar.features.len());
        if normalised.len() != n * t * f {
            return Err(PredictError::Shape {
                what: format!("{} values for {n} windows of [{t}, {f}]", normalised.len()),
            });
        }
        let mut outputs = Vec::with_capacity(n);
        for chunk in normalised.chunks(self.max_batch.saturating_mul(t * f)) {
            let c = chunk.len() / (t * f);
            let tensor = Tensor::from_shape(&[c, t, f], chunk).map_err(|e| self.run_error(e))?;
            outputs.extend(self.run(Arc::new(tensor), c)?);
        }
        Ok(outputs)
    }

    fn run_error(&self, e: impl Into<anyhow::Error>) -> PredictError {
        PredictError::Run {
            origin: self.origin.clone(),
            reason: format!("{:#}", e.into()),
        }
    }

    /// One batched run. The plan gets a second handle on `input`, so it never writes
    /// into it and the caller can reuse it once the run's state is dropped.
    fn run(&self, input: Arc<Tensor>, n: usize) -> Result<Vec<f32>, PredictError> {
        let inputs: TVec<TValue> = std::iter::once(input.into_tvalue()).collect();
        let outputs = self.plan.run(inputs).map_err(|e| self.run_error(e))?;
        let out = outputs.first().ok_or_else(|| PredictError::BadOutput {
            origin: self.origin.clone(),
            what: "the run returned no output".to_string(),
        })?;
        let view = out.try_as_plain_ram().map_err(|e| self.run_error(e))?;
        let values = view.as_slice::<f32>().map_err(|e| self.run_error(e))?;
        if out.shape() != [n, 1] {
            return Err(PredictError::BadOutput {
                origin: self.origin.clone(),
                what: format!(
                    "output shape {:?} for {n} windows, expected [{n}, 1]",
                    out.shape()
                ),
            });
        }
        Ok(values.to_vec())
    }

    /// A buffer of shape `[n, t, f]` that nothing else holds: a kept one when it fits.
    fn take_buffer(&self, n: usize, t: usize, f: usize) -> Result<Arc<Tensor>, PredictError> {
        if let Ok(mut kept) = self.buffers.lock() {
            if let Some(i) = kept.iter().position(|b| b.shape() == [n, t, f]) {
                let mut buffer = kept.swap_remove(i);
                if Arc::get_mut(&mut buffer).is_some() {
                    return Ok(buffer);
                }
            }
        }
        let tensor = Tensor::zero::<f32>(&[n, t, f]).map_err(|e| self.run_error(e))?;
        Ok(Arc::new(tensor))
    }

    fn keep_buffer(&self, buffer: Arc<Tensor>) {
        if let Ok(mut kept) = self.buffers.lock() {
            if kept.len() >= KEPT_BUFFERS {
                kept.remove(0);
            }
            kept.push(buffer);
        }
    }

    /// Normalises `raw` (`c` whole windows) into a buffer and runs it.
    fn run_chunk(
        &self,
        raw: &[f32],
        c: usize,
        t: usize,
        f: usize,
    ) -> Result<Vec<f32>, PredictError> {
        let mut buffer = self.take_buffer(c, t, f)?;
        {
            let tensor = Arc::get_mut(&mut buffer).ok_or_else(|| PredictError::Run {
                origin: self.origin.clone(),
                reason: "input buffer still shared".to_string(),
            })?;
            let mut view = tensor
                .try_as_plain_ram_mut()
                .map_err(|e| self.run_error(e))?;
            let out = view.as_slice_mut::<f32>().map_err(|e| self.run_error(e))?;
            normalise(&self.sidecar, raw, out);
        }
        let result = self.run(buffer.clone(), c);
        self.keep_buffer(buffer);
        result
    }
}

impl PairScorer for LstmScorer {
    /// Predicted slowdowns (0-100) of `n` raw windows `[n, t, f]` whose feature names
    /// are `names`: checked against the sidecar, normalised, run in batches of at most
    /// `max_batch` windows.
    fn score(
        &self,
        names: &[&str],
        raw: &[f32],
        n: usize,
        t: usize,
        f: usize,
    ) -> Result<Vec<f32>, PredictError> {
        self.sidecar.check_features(names)?;
        check_batch(names, raw, n, t, f)?;
        if t != self.sidecar.window {
            return Err(PredictError::Shape {
                what: format!(
                    "windows of {t} ticks, model {} was trained on {}",
                    self.sidecar.name, self.sidecar.window
                ),
            });
        }
        check_finite(names, raw, t)?;
        let mut slowdowns = Vec::with_capacity(n);
        for chunk in raw.chunks(self.max_batch.saturating_mul(t * f)) {
            slowdowns.extend(self.run_chunk(chunk, chunk.len() / (t * f), t, f)?);
        }
        if let Some(i) = slowdowns.iter().position(|s| !s.is_finite()) {
            return Err(PredictError::BadOutput {
                origin: self.origin.clone(),
                what: format!("non-finite prediction {} for window {i}", slowdowns[i]),
            });
        }
        Ok(slowdowns.into_iter().map(|s| s.clamp(0.0, 100.0)).collect())
    }
}

/// Refuses a non-finite raw value, naming its window, tick and feature.
fn check_finite(names: &[&str], raw: &[f32], t: usize) -> Result<(), PredictError> {
    // A branch-free pass first, so the common case vectorises.
    if raw.iter().fold(true, |ok, x| ok & x.is_finite()) {
        return Ok(());
    }
    let f = names.len();
    match raw.iter().position(|x| !x.is_finite()) {
        Some(i) => Err(PredictError::NonFinite {
            window: i / (t * f),
            tick: (i / f) % t,
            feature: names[i % f].to_string(),
            value: raw[i],
        }),
        None => Ok(()),
    }
}

/// `(x - mean) / std` per feature into `out`. Subtract then divide, in f32, as the
/// trainer does: the golden vectors hold exactly these numbers.
fn normalise(sidecar: &Sidecar, raw: &[f32], out: &mut [f32]) {
    let (mean, std) = (&sidecar.normalisation.mean, &sidecar.normalisation.std);
    for (row_in, row_out) in raw
        .chunks_exact(mean.len())
        .zip(out.chunks_exact_mut(mean.len()))
    {
        for (((o, x), m), s) in row_out.iter_mut().zip(row_in).zip(mean).zip(std) {
            *o = (x - m) / s;
        }
    }
}

fn check_sha256(onnx: &[u8], sidecar: &Sidecar, origin: &str) -> Result<(), ModelError> {
    let actual: String = Sha256::digest(onnx)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if actual != sidecar.onnx_sha256 {
        return Err(ModelError::Checksum {
            origin: origin.to_string(),
            len: onnx.len(),
            expected: sidecar.onnx_sha256.clone(),
            actual,
        });
    }
    Ok(())
}

/// Parse, type with a symbolic batch, check the output, optimise, plan: once.
fn prepare(
    proto: &pb::ModelProto,
    sidecar: &Sidecar,
    origin: &str,
) -> Result<Arc<TypedSimplePlan>, ModelError> {
    let tract_err = |stage: &'static str| {
        move |e: anyhow::Error| ModelError::Tract {
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
        TDim::from(sidecar.window as i64),
        TDim::from(sidecar.features.len() as i64),
    ];
    model
        .set_input_fact(0, f32::fact(shape).into())
        .map_err(tract_err("set the input shape"))?;
    let typed = model.into_typed().map_err(tract_err("type the graph"))?;
    let out_fact = typed.output_fact(0).map_err(tract_err("type the output"))?;
    let expected = [TDim::from(batch), TDim::from(1)];
    if out_fact.datum_type != f32::datum_type() || out_fact.shape.dims() != expected {
        return Err(ModelError::Output {
            origin: origin.to_string(),
            what: format!(
                "is {:?} {:?}, expected f32 [{}, 1]",
                out_fact.datum_type,
                out_fact.shape.dims(),
                sidecar.batch_symbol()
            ),
        });
    }
    let optimized = typed
        .into_optimized()
        .map_err(tract_err("optimise the graph"))?;
    optimized
        .into_runnable()
        .map_err(tract_err("plan the graph"))
}
