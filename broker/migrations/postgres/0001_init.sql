-- scopegate-broker PostgreSQL schema, version 1: the same tables as SQLite's 0001 + 0002. Secrets
-- are never stored in the clear: our own codes and refresh tokens as SHA-256 hashes, downstream
-- tokens and signing keys AEAD-encrypted by the broker before they reach the database.

CREATE TABLE clients (
    client_id    TEXT PRIMARY KEY,
    gateway      TEXT NOT NULL,
    metadata     TEXT NOT NULL,          -- JSON ClientMetadata
    secret_hash  TEXT,                   -- confidential DCR clients only
    created_at   BIGINT NOT NULL
);
CREATE INDEX clients_by_gateway ON clients(gateway, created_at);

-- Authorization requests between /authorize and /callback.
CREATE TABLE pending (
    id_hash      TEXT PRIMARY KEY,       -- hash of the handle carried by the consent form
    gateway      TEXT NOT NULL,
    data         TEXT NOT NULL,          -- JSON: client, redirect_uri, state, server, scopes, challenge
    csrf_hash    TEXT NOT NULL,
    state_hash   TEXT UNIQUE,            -- downstream `state`, set on approval
    secret       BYTEA,                  -- encrypted downstream PKCE verifier, set on approval
    expires_at   BIGINT NOT NULL
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
    downstream             BYTEA NOT NULL,  -- encrypted JSON {access_token, refresh_token}
    downstream_expires_at  BIGINT NOT NULL,
    version                BIGINT NOT NULL, -- bumped by every downstream update (optimistic lock)
    created_at             BIGINT NOT NULL,
    updated_at             BIGINT NOT NULL
);
CREATE INDEX grants_by_client ON grants(client_id);

CREATE TABLE codes (
    code_hash       TEXT PRIMARY KEY,
    grant_id        TEXT NOT NULL REFERENCES grants(id),
    client_id       TEXT NOT NULL,
    redirect_uri    TEXT NOT NULL,
    code_challenge  TEXT NOT NULL,
    resource        TEXT NOT NULL,
    expires_at      BIGINT NOT NULL,
    used            BOOLEAN NOT NULL DEFAULT false
);

CREATE TABLE refresh_tokens (
    token_hash   TEXT PRIMARY KEY,
    grant_id     TEXT NOT NULL REFERENCES grants(id),
    client_id    TEXT NOT NULL,
    status       TEXT NOT NULL,          -- active | rotated | revoked
    expires_at   BIGINT NOT NULL,
    created_at   BIGINT NOT NULL
);
CREATE INDEX refresh_tokens_by_grant ON refresh_tokens(grant_id);

CREATE TABLE signing_keys (
    kid          TEXT PRIMARY KEY,
    private_key  BYTEA NOT NULL,         -- encrypted PEM
    created_at   BIGINT NOT NULL
);

-- Revoked grants as the filter polls them (`/internal/revocations?since=<seq>`). A row lives until
-- every token of its grant has expired. Inserts are serialised (an advisory lock in the broker) so
-- sequence numbers commit in order and a poller's cursor never skips one.
CREATE TABLE revocations (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    grant_id     TEXT NOT NULL,
    until        BIGINT NOT NULL
);
