-- Keyset pages of a customer's lines ((charge start, public id) after a cursor, within
-- a period) read in index order: without it PostgreSQL sorted the customer's whole
-- period for every page.
CREATE INDEX ledger_customer_period_page ON ledger_lines (customer, period, charge_start_ms, public_id);
