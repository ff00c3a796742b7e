//! The feature contract's names and layout (docs/dataset.md, "Features, in order").
//!
//! The order here is the order of the model's last input axis and of the sidecar's
//! `features` list; the scorer refuses a model whose list differs, so a change here
//! means retraining (scripts/model/features.py holds the same list).

/// Features of one VM in one model tick: the `v_*` block, then again the `a_*` block.
pub const PER_VM: usize = 20;
/// Features of the ordered pair: `pair_*`.
pub const PAIR: usize = 5;
/// Time-of-day and day-of-week features: `time_*`.
pub const TIME: usize = 4;
/// Features per model tick (`F`).
pub const FEATURES: usize = 2 * PER_VM + PAIR + TIME;

/// Where each block starts in a model tick's row.
pub const VICTIM_AT: usize = 0;
pub const AGGRESSOR_AT: usize = PER_VM;
pub const PAIR_AT: usize = 2 * PER_VM;
pub const TIME_AT: usize = PAIR_AT + PAIR;

/// Column names, in the order of a model tick's row.
pub const FEATURE_NAMES: [&str; FEATURES] = [
    "v_cpu_cores",
    "v_throttled_ratio",
    "v_rq_wait_ratio",
    "v_rq_mean_wait_log",
    "v_rq_max_wait_log",
    "v_preempt_rate_log",
    "v_preempted_ratio",
    "v_wakeup_rate_log",
    "v_psi_cpu_ratio",
    "v_psi_memory_ratio",
    "v_psi_io_ratio",
    "v_io_ops_log",
    "v_io_bytes_log",
    "v_io_latency_log",
    "v_major_faults_log",
    "v_memory_log",
    "v_class_cpu",
    "v_class_memory",
    "v_class_io",
    "v_class_other",
    "a_cpu_cores",
    "a_throttled_ratio",
    "a_rq_wait_ratio",
    "a_rq_mean_wait_log",
    "a_rq_max_wait_log",
    "a_preempt_rate_log",
    "a_preempted_ratio",
    "a_wakeup_rate_log",
    "a_psi_cpu_ratio",
    "a_psi_memory_ratio",
    "a_psi_io_ratio",
    "a_io_ops_log",
    "a_io_bytes_log",
    "a_io_latency_log",
    "a_major_faults_log",
    "a_memory_log",
    "a_class_cpu",
    "a_class_memory",
    "a_class_io",
    "a_class_other",
    "pair_preempted_by_ratio",
    "pair_preempted_by_rate_log",
    "pair_preempts_ratio",
    "pair_host_preempted_ratio",
    "pair_shared_cpus",
    "time_day_sin",
    "time_day_cos",
    "time_week_sin",
    "time_week_cos",
];

/// The coarse class of a VM's free-form `workload` label: the one-hot `class_*`
/// features. Labels are whatever operators put in their inventory, so the model sees
/// four classes it can learn from rather than an open vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum WorkloadClass {
    Cpu,
    Memory,
    Io,
    #[default]
    Other,
}

/// Whole labels (compared lower-cased) and their class; anything else is `Other`.
const CLASSES: [(&str, WorkloadClass); 16] = [
    ("cpu", WorkloadClass::Cpu),
    ("compute", WorkloadClass::Cpu),
    ("batch", WorkloadClass::Cpu),
    ("web", WorkloadClass::Cpu),
    ("ctxsw", WorkloadClass::Cpu),
    ("memory", WorkloadClass::Memory),
    ("mem", WorkloadClass::Memory),
    ("cache", WorkloadClass::Memory),
    ("membw", WorkloadClass::Memory),
    ("database", WorkloadClass::Memory),
    ("db", WorkloadClass::Memory),
    ("analytics", WorkloadClass::Memory),
    ("io", WorkloadClass::Io),
    ("disk", WorkloadClass::Io),
    ("fsync", WorkloadClass::Io),
    ("storage", WorkloadClass::Io),
];

impl WorkloadClass {
    /// The class of a `workload` label: lower-cased, whole label; no label is `Other`.
    pub fn of_label(label: Option<&str>) -> Self {
        let Some(label) = label else {
            return Self::Other;
        };
        let find = |l: &str| {
            CLASSES
                .iter()
                .find(|(name, _)| *name == l)
                .map_or(Self::Other, |(_, c)| *c)
        };
        if label.is_ascii() {
            CLASSES
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(label))
                .map_or(Self::Other, |(_, c)| *c)
        } else {
            // Python's str.lower() maps a few non-ASCII letters to ASCII ones (the
            // Kelvin sign to "k"); so does Rust's, and the trainer must agree.
            find(&label.to_lowercase())
        }
    }

    /// Position of this class in the `class_*` block.
    pub fn index(self) -> usize {
        match self {
            Self::Cpu => 0,
            Self::Memory => 1,
            Self::Io => 2,
            Self::Other => 3,
        }
    }

    /// The `class_cpu`, `class_memory`, `class_io`, `class_other` values.
    pub fn one_hot(self) -> [f64; 4] {
        let mut v = [0.0; 4];
        v[self.index()] = 1.0;
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_contract_layout() {
        assert_eq!(FEATURES, 49);
        assert_eq!(FEATURE_NAMES[VICTIM_AT], "v_cpu_cores");
        assert_eq!(FEATURE_NAMES[AGGRESSOR_AT - 1], "v_class_other");
        assert_eq!(FEATURE_NAMES[AGGRESSOR_AT], "a_cpu_cores");
        assert_eq!(FEATURE_NAMES[PAIR_AT - 1], "a_class_other");
        assert_eq!(FEATURE_NAMES[PAIR_AT], "pair_preempted_by_ratio");
        assert_eq!(FEATURE_NAMES[PAIR_AT + 4], "pair_shared_cpus");
        assert_eq!(FEATURE_NAMES[TIME_AT], "time_day_sin");
        assert_eq!(FEATURE_NAMES[FEATURES - 1], "time_week_cos");
        // The a_ block is the v_ block renamed, feature for feature.
        for i in 0..PER_VM {
            let v = FEATURE_NAMES[VICTIM_AT + i].strip_prefix("v_");
            let a = FEATURE_NAMES[AGGRESSOR_AT + i].strip_prefix("a_");
            assert!(v.is_some() && v == a, "{i}: {v:?} vs {a:?}");
        }
        let mut unique = FEATURE_NAMES.to_vec();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), FEATURES);
    }

    #[test]
    fn labels_map_to_classes() {
        use WorkloadClass::*;
        for (label, class) in [
            ("cpu", Cpu),
            ("compute", Cpu),
            ("batch", Cpu),
            ("web", Cpu),
            ("ctxsw", Cpu),
            ("memory", Memory),
            ("mem", Memory),
            ("cache", Memory),
            ("membw", Memory),
            ("database", Memory),
            ("db", Memory),
            ("analytics", Memory),
            ("io", Io),
            ("disk", Io),
            ("fsync", Io),
            ("storage", Io),
            ("WEB", Cpu),
            ("DataBase", Memory),
            ("Fsync", Io),
            ("DIS\u{212A}", Io), // Kelvin sign, lower-cased to "k" as Python does
            // whole label only
            ("web-frontend", Other),
            (" cpu", Other),
            ("", Other),
            ("vm", Other),
        ] {
            assert_eq!(WorkloadClass::of_label(Some(label)), class, "{label:?}");
        }
        assert_eq!(WorkloadClass::of_label(None), Other);
    }

    #[test]
    fn one_hot_sets_one_column() {
        assert_eq!(WorkloadClass::Cpu.one_hot(), [1.0, 0.0, 0.0, 0.0]);
        assert_eq!(WorkloadClass::Memory.one_hot(), [0.0, 1.0, 0.0, 0.0]);
        assert_eq!(WorkloadClass::Io.one_hot(), [0.0, 0.0, 1.0, 0.0]);
        assert_eq!(WorkloadClass::Other.one_hot(), [0.0, 0.0, 0.0, 1.0]);
    }
}
