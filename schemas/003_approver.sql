-- What the approver sees (docs/decisions.md §15).
-- The serial (lowercase hex) of the client certificate a request came
-- with; NULL for rows written before schema 3.
ALTER TABLE requests ADD COLUMN client_serial TEXT
  CHECK (client_serial IS NULL
         OR (length(client_serial) BETWEEN 1 AND 64
             AND client_serial NOT GLOB '*[^0-9a-f]*'));
-- A subject pre-authorisation bound to one IDevID: the SHA-256
-- fingerprint (64 lowercase hex) that must match as well; NULL: any client.
ALTER TABLE preauth ADD COLUMN idevid TEXT
  CHECK (idevid IS NULL
         OR (kind = 'subject' AND length(idevid) = 64
             AND idevid NOT GLOB '*[^0-9a-f]*'));
