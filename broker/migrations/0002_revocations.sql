-- scopegate-broker schema, version 2: revoked grants as the filter polls them
-- (`/internal/revocations?since=<seq>`). A row lives until every token of its grant has expired.

CREATE TABLE revocations (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    grant_id     TEXT NOT NULL,
    until        INTEGER NOT NULL
);
