//! cgroup v1/v2 readers (placeholder).
