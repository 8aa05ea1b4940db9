// Demo OAuth 2.1 / OIDC authorization server (oidc-provider) standing in for a SaaS identity
// provider in the scopegate two-server example. See README.md for the config format.
//
// Usage: node server.mjs --config FILE
//
// It issues RFC 9068 JWT access tokens per resource indicator, logs the one demo user in and
// consents on its behalf without any form, and keeps everything in memory: a restart forgets
// every client session, grant and key. It is a test fixture, not a production server.

import * as crypto from 'node:crypto';
import MemoryStore from './adapter.mjs';
import { readFileSync } from 'node:fs';
import * as http from 'node:http';
import { parseArgs } from 'node:util';

import Provider, { errors } from 'oidc-provider';

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

const ALGS = new Set(['RS256', 'PS256', 'ES256', 'EdDSA']);

function fail(message) {
  process.stderr.write(`authz: ${message}\n`);
  process.exit(2);
}

function positiveInt(value, name, fallback) {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value <= 0) fail(`${name} must be a positive integer (seconds)`);
  return value;
}

// Reads and checks the JSON config so that mistakes fail at startup with a named field, not as
// an opaque error in the middle of a test's OAuth flow.
function loadConfig(file) {
  let raw;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    fail(`cannot read config ${file}: ${err.message}`);
  }
  const known = new Set([
    'host', 'port', 'issuer', 'clients', 'resources', 'defaultResource', 'accessTokenTTL',
    'refreshTokenTTL', 'user', 'pkceRequired', 'registration', 'clientIdMetadataDocuments',
  ]);
  for (const key of Object.keys(raw)) {
    if (!known.has(key)) fail(`unknown config field "${key}"`);
  }

  const port = raw.port ?? 0;
  if (!Number.isInteger(port) || port < 0 || port > 65535) fail('port must be an integer 0-65535');

  const resources = raw.resources ?? {};
  if (typeof resources !== 'object' || Array.isArray(resources)) fail('resources must be an object');
  for (const [url, rs] of Object.entries(resources)) {
    if (!URL.canParse(url) || url.includes('#')) fail(`resource "${url}" must be an absolute URL without fragment`);
    if (typeof rs?.scope !== 'string') fail(`resources["${url}"].scope must be a space separated string`);
    if (rs.alg !== undefined && !ALGS.has(rs.alg)) fail(`resources["${url}"].alg must be one of ${[...ALGS].join(', ')}`);
    positiveInt(rs.accessTokenTTL, `resources["${url}"].accessTokenTTL`);
  }
  if (raw.defaultResource !== undefined && !(raw.defaultResource in resources)) {
    fail('defaultResource must be one of the configured resources');
  }

  if (!Array.isArray(raw.clients)) fail('clients must be an array of client metadata objects');

  // `user` may be just the account id or an object with id and claims.
  const userRaw = typeof raw.user === 'string' ? { id: raw.user } : (raw.user ?? {});
  const user = {
    id: userRaw.id ?? 'demo-user',
    email: userRaw.email ?? 'demo-user@example.com',
    name: userRaw.name ?? 'Demo User',
  };

  if (raw.registration !== undefined && typeof raw.registration !== 'boolean') fail('registration must be true or false');
  const cimd = raw.clientIdMetadataDocuments;
  if (cimd !== undefined && (typeof cimd !== 'object' || Array.isArray(cimd)
    || Object.keys(cimd).some((k) => k !== 'allowPrivateAddresses'))) {
    fail('clientIdMetadataDocuments must be an object with only allowPrivateAddresses');
  }

  return {
    host: raw.host ?? '127.0.0.1',
    port,
    issuer: raw.issuer,
    clients: raw.clients,
    resources,
    defaultResource: raw.defaultResource,
    accessTokenTTL: positiveInt(raw.accessTokenTTL, 'accessTokenTTL', 600),
    refreshTokenTTL: positiveInt(raw.refreshTokenTTL, 'refreshTokenTTL', 14 * 24 * 3600),
    pkceRequired: raw.pkceRequired ?? true,
    user,
    registration: raw.registration ?? false,
    cimd,
  };
}

// ---------------------------------------------------------------------------------------------
// Signing keys
// ---------------------------------------------------------------------------------------------

// RFC 7638 thumbprint, used as the kid so that the kid is stable for a key and unique per start.
function thumbprint(jwk) {
  const members = {
    RSA: ['e', 'kty', 'n'],
    EC: ['crv', 'kty', 'x', 'y'],
    OKP: ['crv', 'kty', 'x'],
  }[jwk.kty];
  const canonical = JSON.stringify(Object.fromEntries(members.map((m) => [m, jwk[m]])));
  return crypto.createHash('sha256').update(canonical).digest('base64url');
}

// Fresh keys on every start: tests must fetch the JWKS rather than pin keys, as against a real
// identity provider that rotates. The RSA key comes first because oidc-provider signs ID tokens
// (RS256 by default) with the first matching key.
function generateSigningKeys() {
  const pairs = [
    crypto.generateKeyPairSync('rsa', { modulusLength: 2048, publicExponent: 0x10001 }),
    crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }),
    crypto.generateKeyPairSync('ed25519'),
  ];
  return pairs.map(({ privateKey }) => {
    const jwk = privateKey.export({ format: 'jwk' });
    return { ...jwk, kid: thumbprint(jwk), use: 'sig' };
  });
}

// ---------------------------------------------------------------------------------------------
// Provider
// ---------------------------------------------------------------------------------------------

function buildProvider(config, issuer) {
  const { user, resources } = config;

  // oidc-provider validates a client's `scope` against the static scope list, so every resource
  // scope is listed there too; that also lets a client's `scope` restrict resource scopes.
  const resourceScopes = Object.values(resources).flatMap((rs) => rs.scope.split(' ').filter(Boolean));
  const scopes = [...new Set(['openid', 'offline_access', ...resourceScopes])];

  // Only the configured clients' `scope` narrows what they get. MCP clients that register
  // themselves (DCR) or come as a metadata document register the scope of their first challenge;
  // narrowing to it would make every later step-up impossible.
  const configuredClients = new Set(config.clients.map((c) => c.client_id));

  const account = {
    accountId: user.id,
    async claims() {
      return {
        sub: user.id, email: user.email, email_verified: true, name: user.name,
      };
    },
  };

  const provider = new Provider(issuer, {
    // Unbounded, unlike the built-in LRU of 1,000 entries (see adapter.mjs).
    adapter: MemoryStore,
    clients: config.clients,
    jwks: { keys: generateSigningKeys() },
    // Cookie signing keys are per process: sessions die with it, which is what tests want.
    cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
    scopes,
    // OAuth 2.1: authorization code only, no implicit or hybrid response types.
    responseTypes: ['code'],
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name'],
    },
    findAccount: async (_ctx, id) => (id === user.id ? account : undefined),
    interactions: {
      url: (_ctx, interaction) => `/interaction/${interaction.uid}`,
    },
    pkce: {
      // OAuth 2.1 requires PKCE for every client; S256 is the only method oidc-provider offers.
      required: () => config.pkceRequired,
    },
    features: {
      // The built-in dev login pages would need a browser; the routes below replace them.
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      // RFC 7591 dynamic registration, open (no initial access token), for MCP clients.
      registration: { enabled: config.registration },
      // Client ID Metadata Documents (draft-02): the client_id is an https URL to fetch.
      clientIdMetadataDocument: { enabled: config.cimd !== undefined, ack: 'draft-02' },
      introspection: { enabled: true },
      revocation: { enabled: true },
      resourceIndicators: {
        enabled: true,
        // Without a `resource` parameter, use the configured default (or the only resource), so
        // that a client that forgets it still gets a JWT for the API rather than an opaque token.
        defaultResource: async (_ctx, _client, oneOf) => {
          if (oneOf) return oneOf;
          if (config.defaultResource) return config.defaultResource;
          const all = Object.keys(resources);
          return all.length === 1 ? all[0] : undefined;
        },
        // At the token endpoint, a code or refresh token granted for one resource yields a token
        // for that resource even when the request repeats no `resource` parameter.
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx, resourceIndicator, client) => {
          const rs = resources[resourceIndicator];
          if (!rs) throw new errors.InvalidTarget();
          // A client's registered `scope` narrows what it can get for any resource.
          let scope = rs.scope.split(' ').filter(Boolean);
          if (client?.scope && configuredClients.has(client.clientId)) {
            const allowed = new Set(client.scope.split(' '));
            scope = scope.filter((s) => allowed.has(s));
          }
          return {
            scope: scope.join(' '),
            accessTokenTTL: rs.accessTokenTTL ?? config.accessTokenTTL,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: rs.alg ?? 'ES256' } },
          };
        },
      },
    },
    // Every client allowed the refresh_token grant gets a refresh token from authorization_code,
    // whether or not it asked for offline_access (a confidential web client usually does not).
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    // Always rotate, so tests can see rotation (and reuse detection) on every refresh.
    rotateRefreshToken: () => true,
    // Refresh tokens outlive the login session: the broker refreshes long after the user left.
    expiresWithSession: async () => false,
    ttl: {
      AccessToken: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? config.accessTokenTTL,
      ClientCredentials: (_ctx, token) => token.resourceServer?.accessTokenTTL
        ?? config.accessTokenTTL,
      RefreshToken: () => config.refreshTokenTTL,
      AuthorizationCode: 60,
      IdToken: 3600,
      Interaction: 600,
      Session: 24 * 3600,
      Grant: config.refreshTokenTTL,
    },
    // oidc-provider refuses to fetch from special-use addresses; a test that hosts metadata
    // documents on loopback turns that off with clientIdMetadataDocuments.allowPrivateAddresses
    // (its certificate is trusted through NODE_EXTRA_CA_CERTS).
    ...(config.cimd?.allowPrivateAddresses ? {
      fetch: (url, options) => {
        const { dispatcher: _ssrfGuard, ...rest } = options;
        return fetch(url, rest);
      },
    } : {}),
    // No CORS restrictions: only tests and local demos talk to this server.
    clientBasedCORS: () => true,
    // Error pages as JSON: tests read them, nobody renders them.
    renderError: async (ctx, out, _error) => {
      ctx.type = 'application/json';
      ctx.body = out;
    },
  });

  // Behind a loopback http issuer there is no TLS terminator; trust no proxy headers.
  provider.proxy = false;

  // Errors are logged by their OAuth error code and description only: never tokens, codes,
  // secrets or request bodies.
  const logError = (event) => (_ctx, err) => {
    process.stderr.write(`authz: ${event}: ${err.error ?? err.name}: ${err.error_description ?? err.message}\n`);
  };
  // Revocations are logged by event name only (tests read it to see the broker revoke downstream).
  provider.on('grant.revoked', () => process.stderr.write('authz: grant.revoked\n'));
  for (const event of ['server_error', 'authorization.error', 'grant.error', 'introspection.error',
    'revocation.error', 'backchannel.error', 'jwks.error', 'discovery.error']) {
    provider.on(event, logError(event));
  }

  return provider;
}

// ---------------------------------------------------------------------------------------------
// Automatic login and consent
// ---------------------------------------------------------------------------------------------

// oidc-provider redirects the user agent to /interaction/:uid whenever it needs login or consent.
// Instead of a form, these handlers answer at once for the demo user: login, then a grant that
// covers everything the request asked for (OIDC scopes, claims and resource scopes). A
// non-browser client that follows redirects and keeps cookies ends at redirect_uri?code=...
async function handleInteraction(provider, config, req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params, session, grantId } = details;

  if (prompt.name === 'login') {
    await provider.interactionFinished(req, res, { login: { accountId: config.user.id } }, {
      mergeWithLastSubmission: false,
    });
    return;
  }

  if (prompt.name === 'consent') {
    const grant = grantId
      ? await provider.Grant.find(grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    const missing = prompt.details;
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [resource, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
      grant.addResourceScope(resource, scopes.join(' '));
    }
    const savedGrantId = await grant.save();
    // A new grant's id goes back in the result; an existing one is updated in place.
    const consent = grantId ? {} : { grantId: savedGrantId };
    await provider.interactionFinished(req, res, { consent }, { mergeWithLastSubmission: true });
    return;
  }

  // Any other prompt would need a human; say so instead of hanging the client.
  res.writeHead(400, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ error: 'unsupported_prompt', prompt: prompt.name }));
}

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

async function main() {
  const { values } = parseArgs({ options: { config: { type: 'string' } } });
  if (!values.config) fail('usage: node server.mjs --config FILE');
  const config = loadConfig(values.config);

  // The issuer depends on the bound port when port is 0, so listen first and build the
  // provider afterwards; nothing can connect before the "listening" line is printed anyway.
  let handler = (_req, res) => {
    res.writeHead(503);
    res.end();
  };
  const server = http.createServer((req, res) => handler(req, res));
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, resolve);
  });
  const { port } = server.address();
  const issuer = (config.issuer ?? 'http://127.0.0.1:{port}').replace('{port}', String(port));

  let provider;
  try {
    provider = buildProvider(config, issuer);
  } catch (err) {
    fail(`invalid configuration: ${err.message}`);
  }
  // oidc-provider checks static client metadata only when a client is first used; check it now
  // so that a bad client fails the start instead of a test's first token request.
  for (const client of config.clients) {
    try {
      await provider.Client.validate(client);
    } catch (err) {
      fail(`invalid client ${JSON.stringify(client.client_id)}: ${err.error_description ?? err.message}`);
    }
  }
  const providerCallback = provider.callback();

  handler = (req, res) => {
    const path = req.url.split('?')[0];
    if (req.method === 'GET' && /^\/interaction\/[^/]+$/.test(path)) {
      handleInteraction(provider, config, req, res).catch((err) => {
        process.stderr.write(`authz: interaction failed: ${err.name}: ${err.message}\n`);
        if (!res.headersSent) {
          res.writeHead(400, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ error: 'interaction_failed', error_description: err.message }));
        }
      });
      return;
    }
    providerCallback(req, res);
  };

  // Handlers go in before the "listening" line: a harness may signal as soon as it reads it.
  const shutdown = () => {
    server.close(() => process.exit(0));
    // Keep-alive connections would hold close() open; do not wait for them.
    server.closeAllConnections();
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);

  // One line on stdout, which test harnesses wait for; the write callback fires once it is flushed.
  await new Promise((resolve) => {
    process.stdout.write(`listening on http://${config.host}:${port}\n`, resolve);
  });
}

main().catch((err) => fail(err.stack ?? String(err)));
