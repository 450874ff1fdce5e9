-- est-coaps store, schema version 1 (docs/decisions.md §7).
--
-- Applied by store_open() inside one transaction; PRAGMA user_version then
-- becomes 1. Never edit a released migration: add 002_*.sql instead.
-- Tables are STRICT with TEXT/BLOB/INTEGER columns only. Times are unix
-- seconds. No private key is ever stored.

-- Issued certificates. request_id is set for every certificate the server
-- issues (auto issuance records a request row too); it stays nullable for
-- certificates recorded from elsewhere.
CREATE TABLE certificates (
  id            INTEGER PRIMARY KEY,
  serial        TEXT    NOT NULL UNIQUE
                CHECK (length(serial) BETWEEN 1 AND 64
                       AND serial NOT GLOB '*[^0-9a-f]*'),
  request_id    INTEGER REFERENCES requests(id),
  subject       TEXT    NOT NULL,
  client        TEXT,
  not_before    INTEGER,
  not_after     INTEGER,
  der           BLOB    NOT NULL CHECK (length(der) BETWEEN 1 AND 16384),
  revoked_at    INTEGER,
  revoke_reason TEXT,
  created       INTEGER NOT NULL
) STRICT;

-- Enrollment requests. Retries are matched on (spki_sha256, client_fp,
-- function): the newest row for that key is the one that counts.
CREATE TABLE requests (
  id           INTEGER PRIMARY KEY,
  state        TEXT    NOT NULL
               CHECK (state IN ('pending','approved','rejected','issued','expired')),
  function     TEXT    NOT NULL CHECK (function IN ('sen','sren','skg','skc')),
  spki_sha256  BLOB    NOT NULL CHECK (length(spki_sha256) = 32),
  client_fp    BLOB    NOT NULL CHECK (length(client_fp) = 32),
  client       TEXT    NOT NULL,
  client_class TEXT    CHECK (client_class IN ('idevid','ldevid')),
  subject      TEXT    NOT NULL,
  csr          BLOB    NOT NULL CHECK (length(csr) BETWEEN 1 AND 16384),
  reason       TEXT,
  created      INTEGER NOT NULL,
  updated      INTEGER NOT NULL,
  expires      INTEGER,
  cert_id      INTEGER REFERENCES certificates(id),
  CHECK (state <> 'issued' OR cert_id IS NOT NULL)
) STRICT;

CREATE INDEX requests_key ON requests (spki_sha256, client_fp, function);
-- store_expire() and "list pending".
CREATE INDEX requests_state ON requests (state, expires);

-- Operator approval given before the device asks.
CREATE TABLE preauth (
  id      INTEGER PRIMARY KEY,
  kind    TEXT    NOT NULL CHECK (kind IN ('subject','idevid')),
  value   TEXT    NOT NULL,
  note    TEXT,
  created INTEGER NOT NULL,
  actor   TEXT    NOT NULL,
  UNIQUE (kind, value),
  CHECK (kind <> 'idevid'
         OR (length(value) = 64 AND value NOT GLOB '*[^0-9a-f]*'))
) STRICT;

-- Audit trail, written in the same transaction as the change it records.
-- Doubles as the event log the broker plugin publishes from (by id).
-- action has no CHECK so that later versions can add actions without a
-- table rebuild; the program validates it.
CREATE TABLE audit (
  id          INTEGER PRIMARY KEY,
  time        INTEGER NOT NULL,
  actor       TEXT    NOT NULL,
  action      TEXT    NOT NULL,
  request_id  INTEGER,
  cert_serial TEXT,
  detail      TEXT
) STRICT;

CREATE INDEX audit_request ON audit (request_id);

-- Small key/value settings, e.g. the broker plugin's event cursor.
CREATE TABLE meta (
  key   TEXT NOT NULL PRIMARY KEY,
  value TEXT NOT NULL
) STRICT;
