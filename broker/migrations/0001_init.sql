-- scopegate-broker schema, version 1. Secrets are never stored in the clear: our own codes and
-- refresh tokens as SHA-256 hashes, downstream tokens and signing keys AEAD-encrypted.

CREATE TABLE clients (
    client_id    TEXT PRIMARY KEY,
    gateway      TEXT NOT NULL,
    metadata     TEXT NOT NULL,          -- JSON ClientMetadata
    secret_hash  TEXT,                   -- confidential DCR clients only
    created_at   INTEGER NOT NULL
);

-- Authorization requests between /authorize and /callback.
CREATE TABLE pending (
    id_hash      TEXT PRIMARY KEY,       -- hash of the handle carried by the consent form
    gateway      TEXT NOT NULL,
    data         TEXT NOT NULL,          -- JSON: client, redirect_uri, state, server, scopes, challenge
    csrf_hash    TEXT NOT NULL,
    state_hash   TEXT UNIQUE,            -- downstream `state`, set on approval
    secret       BLOB,                   -- encrypted downstream PKCE verifier, set on approval
    expires_at   INTEGER NOT NULL
);

-- One grant per completed authorization: the refresh-token family and the downstream credential.
CREATE TABLE grants (
    id                     TEXT PRIMARY KEY,
    gateway                TEXT NOT NULL,
    server                 TEXT NOT NULL,
    client_id              TEXT NOT NULL,
    subject                TEXT NOT NULL,
    scope                  TEXT NOT NULL,
    status                 TEXT NOT NULL,   -- active | revoked | dead (downstream refused refresh)
    downstream             BLOB NOT NULL,   -- encrypted JSON {access_token, refresh_token}
    downstream_expires_at  INTEGER NOT NULL,
    version                INTEGER NOT NULL, -- bumped by every downstream update (optimistic lock)
    created_at             INTEGER NOT NULL,
    updated_at             INTEGER NOT NULL
);

CREATE TABLE codes (
    code_hash       TEXT PRIMARY KEY,
    grant_id        TEXT NOT NULL REFERENCES grants(id),
    client_id       TEXT NOT NULL,
    redirect_uri    TEXT NOT NULL,
    code_challenge  TEXT NOT NULL,
    resource        TEXT NOT NULL,
    expires_at      INTEGER NOT NULL,
    used            INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE refresh_tokens (
    token_hash   TEXT PRIMARY KEY,
    grant_id     TEXT NOT NULL REFERENCES grants(id),
    client_id    TEXT NOT NULL,
    status       TEXT NOT NULL,          -- active | rotated | revoked
    expires_at   INTEGER NOT NULL,
    created_at   INTEGER NOT NULL
);
CREATE INDEX refresh_tokens_by_grant ON refresh_tokens(grant_id);

CREATE TABLE signing_keys (
    kid          TEXT PRIMARY KEY,
    private_key  BLOB NOT NULL,          -- encrypted PEM
    created_at   INTEGER NOT NULL
);
