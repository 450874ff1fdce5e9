-- RA clients (docs/decisions.md §17, RFC 7030 §3.7): the subject of the
-- registration authority's certificate a request came through; NULL when
-- the device asked itself. client, client_serial and client_fp stay the
-- device's own, as the RA vouched for them.
ALTER TABLE requests ADD COLUMN ra TEXT
  CHECK (ra IS NULL OR length(ra) BETWEEN 1 AND 1024);
