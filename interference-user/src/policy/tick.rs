//! What one tick's passes share: the pairs to work on, and the bookkeeping that keeps
//! two pairs from changing one VM in the same tick.

use std::collections::HashSet;

use super::action::Rung;
use super::config::Thresholds;
use super::input::{PolicyInput, VmInput};
use crate::predict::ContentionScore;

/// A pair to consider this tick.
pub(super) struct Work<'a> {
    pub key: String,
    pub score: &'a ContentionScore,
    pub victim: &'a VmInput,
    pub aggressor: &'a VmInput,
    pub th: Thresholds,
}

/// Per-tick bookkeeping shared by the mitigation and rollback passes.
pub(super) struct TickCtx<'a> {
    pub input: &'a PolicyInput<'a>,
    /// The tick the ids carry (normally `input.tick`).
    pub tick: u64,
    pub host_cpus: &'a [u32],
    /// VMs changed by a mitigation action of this tick: no other pair changes them.
    pub claimed: HashSet<String>,
    /// (VM, knob) changed by any action of this tick.
    pub knobs: HashSet<(String, Rung)>,
    pub seq: u32,
}
