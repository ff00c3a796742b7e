use interference::telemetry::ebpf::{EbpfProbes, ProbeSet};

#[test]
fn programs_load_and_attach() {
    let p = EbpfProbes::load(ProbeSet::default());
    match p {
        Ok(p) => eprintln!("{:?} {:?}", p.offsets, p.program_ids()),
        Err(e) => {
            let mut s = format!("{e}");
            let mut src = std::error::Error::source(&e);
            while let Some(x) = src {
                s += &format!(": {x}");
                src = x.source();
            }
            panic!("{s}");
        }
    }
}
