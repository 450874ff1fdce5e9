-- CRL numbers (RFC 5280 §5.2.3, docs/decisions.md §14); as ../002_crl.sql.
ALTER TABLE certificates ADD COLUMN crl_number BIGINT;
