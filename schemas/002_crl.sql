-- CRL numbers (RFC 5280 §5.2.3, docs/decisions.md §14). Revoking a
-- certificate gives it the number of the first CRL that will list it:
-- meta 'crl.number' is the highest number handed out, 'crl.published'
-- the number of the CRL the server last signed (and 'crl.pem' that CRL).
ALTER TABLE certificates ADD COLUMN crl_number INTEGER;
