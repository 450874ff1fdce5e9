-- What the approver sees (docs/decisions.md §15); as ../003_approver.sql.
ALTER TABLE requests ADD COLUMN client_serial TEXT
  CHECK (client_serial IS NULL
         OR (length(client_serial) BETWEEN 1 AND 64 AND client_serial ~ '^[0-9a-f]+$'));
ALTER TABLE preauth ADD COLUMN idevid TEXT
  CHECK (idevid IS NULL
         OR (kind = 'subject' AND length(idevid) = 64 AND idevid ~ '^[0-9a-f]+$'));
