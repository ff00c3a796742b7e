//! The billing families of the textfile: IMC posted by customer and kind, and whether
//! the ledger takes its lines (`interference_ledger_*`, issue 13's alarms).

use super::text::TextWriter;
use crate::billing::BillingMetrics;

pub fn render_billing(w: &mut TextWriter, m: &BillingMetrics) {
    let help = format!(
        "Interference Mitigation Cost posted to the ledger since start, in {}, by customer and kind (charge, credit as a positive amount; simulated_charge, simulated_credit in a dry run).",
        m.currency
    );
    {
        let mut f = w.counter("interference_imc_currency_total", &help);
        for (customer, kind, amount) in &m.imc {
            f.sample(
                &[("customer", customer), ("kind", kind)],
                amount.abs().units(),
            );
        }
    }
    if let Some(l) = m.ledger {
        w.counter(
            "interference_ledger_write_errors_total",
            "Attempts to append to the ledger that failed (disk full, read-only, ...) since start.",
        )
        .sample(&[], l.write_errors);
        w.gauge(
            "interference_ledger_backlog_lines",
            "Ledger lines waiting to be written because the ledger could not take them.",
        )
        .sample(&[], l.backlog_lines);
    }
}
