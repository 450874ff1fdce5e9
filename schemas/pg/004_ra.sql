-- RA clients (docs/decisions.md §17); as ../004_ra.sql.
ALTER TABLE requests ADD COLUMN ra TEXT
  CHECK (ra IS NULL OR length(ra) BETWEEN 1 AND 1024);
