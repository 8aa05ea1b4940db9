// Smoke test for server.mjs: starts it with a temporary config and walks every flow the scopegate
// tests rely on. Exits 0 only when all checks held. Run: `npm test` (or `node smoke.mjs`).
//
// Flows: discovery + JWKS; client_credentials for a resource (JWT header and claims verified
// against the JWKS); authorization_code + PKCE with automatic login and consent followed through
// redirects with a cookie jar; refresh with rotation (and reuse of the old refresh token
// refused); introspection; revocation.

import { spawn } from 'node:child_process';
import * as crypto from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const HERE = fileURLToPath(new URL('.', import.meta.url));
const CLIENT_ID = 'scopegate-saas';
// A throwaway secret for this test's own throwaway server; never printed.
const CLIENT_SECRET = crypto.randomBytes(24).toString('base64url');
const REDIRECT_URI = 'http://127.0.0.1:9/callback';
const RESOURCE_ES = 'https://api.example.com';
const RESOURCE_RS = 'https://rsa.example.com/mcp';
const RESOURCE_ED = 'https://eddsa.example.com';

let failures = 0;
function check(ok, what) {
  process.stdout.write(`${ok ? 'ok  ' : 'FAIL'} ${what}\n`);
  if (!ok) failures += 1;
}

function decodeJwt(jwt) {
  const [h, p] = jwt.split('.');
  return {
    header: JSON.parse(Buffer.from(h, 'base64url')),
    payload: JSON.parse(Buffer.from(p, 'base64url')),
  };
}

// Verifies a compact JWS against the JWKS with node's crypto only (no jose dependency here).
function verifyJwt(jwt, jwks) {
  const [h, p, s] = jwt.split('.');
  const { header } = decodeJwt(jwt);
  const jwk = jwks.keys.find((k) => k.kid === header.kid);
  if (!jwk) return false;
  const key = crypto.createPublicKey({ key: jwk, format: 'jwk' });
  const data = Buffer.from(`${h}.${p}`);
  const sig = Buffer.from(s, 'base64url');
  switch (header.alg) {
    case 'RS256':
      return crypto.verify('sha256', data, key, sig);
    case 'PS256':
      return crypto.verify('sha256', data, {
        key, padding: crypto.constants.RSA_PKCS1_PSS_PADDING, saltLength: 32,
      }, sig);
    case 'ES256':
      return crypto.verify('sha256', data, { key, dsaEncoding: 'ieee-p1363' }, sig);
    case 'EdDSA':
    case 'Ed25519':
      return crypto.verify(null, data, key, sig);
    default:
      return false;
  }
}

function basicAuth() {
  const enc = (v) => encodeURIComponent(v);
  return `Basic ${Buffer.from(`${enc(CLIENT_ID)}:${enc(CLIENT_SECRET)}`).toString('base64')}`;
}

async function tokenRequest(issuer, params) {
  const res = await fetch(`${issuer}/token`, {
    method: 'POST',
    headers: { authorization: basicAuth(), 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(params),
  });
  return { status: res.status, body: await res.json() };
}

// Minimal cookie jar: name -> value, ignoring path/expiry, which is enough for one provider.
class CookieJar {
  #cookies = new Map();

  store(res) {
    for (const line of res.headers.getSetCookie()) {
      const [pair] = line.split(';');
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      if (/expires=Thu, 01 Jan 1970/i.test(line) || value === '') this.#cookies.delete(name);
      else this.#cookies.set(name, value);
    }
  }

  header() {
    return [...this.#cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  }
}

// Follows redirects by hand (fetch cannot keep cookies) until one points at the client's
// redirect_uri, and returns that URL. Fails if any step answers with something other than a
// redirect, i.e. a form a human would have to fill.
async function authorize(issuer, query) {
  const jar = new CookieJar();
  let url = `${issuer}/auth?${new URLSearchParams(query)}`;
  for (let hop = 0; hop < 10; hop += 1) {
    if (url.startsWith(REDIRECT_URI)) return { url: new URL(url), hops: hop };
    const res = await fetch(url, { redirect: 'manual', headers: { cookie: jar.header() } });
    jar.store(res);
    const location = res.headers.get('location');
    if (res.status < 300 || res.status >= 400 || !location) {
      throw new Error(`hop ${hop}: expected a redirect, got ${res.status}: ${(await res.text()).slice(0, 300)}`);
    }
    url = new URL(location, url).href;
  }
  throw new Error('too many redirects');
}

async function startServer(config) {
  const dir = mkdtempSync(join(tmpdir(), 'scopegate-authz-'));
  const file = join(dir, 'config.json');
  writeFileSync(file, JSON.stringify(config, null, 2));
  const child = spawn(process.execPath, [join(HERE, 'server.mjs'), '--config', file], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const line = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('server did not start in 10 s')), 10_000);
    child.once('exit', (code) => reject(new Error(`server exited with ${code}`)));
    createInterface({ input: child.stdout }).once('line', (l) => {
      clearTimeout(timer);
      resolve(l);
    });
  });
  const match = /^listening on (http:\/\/127\.0\.0\.1:(\d+))$/.exec(line);
  if (!match) throw new Error(`unexpected first line: ${line}`);
  return {
    child, dir, issuer: match[1], port: Number(match[2]),
  };
}

async function main() {
  const server = await startServer({
    port: 0,
    accessTokenTTL: 600,
    refreshTokenTTL: 3600,
    user: { id: 'demo-user', email: 'demo@example.com', name: 'Demo User' },
    clients: [{
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      redirect_uris: [REDIRECT_URI],
      grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      scope: 'openid offline_access tickets.read tickets.write accounts.read admin.read',
    }],
    resources: {
      [RESOURCE_ES]: { scope: 'tickets.read tickets.write accounts.read admin.read', accessTokenTTL: 300, alg: 'ES256' },
      [RESOURCE_RS]: { scope: 'tickets.read', alg: 'PS256' },
      [RESOURCE_ED]: { scope: 'admin.read', alg: 'EdDSA' },
    },
    defaultResource: RESOURCE_ES,
  });
  const { issuer } = server;

  try {
    // Discovery and keys.
    const meta = await (await fetch(`${issuer}/.well-known/openid-configuration`)).json();
    check(meta.issuer === issuer, `discovery issuer is ${issuer}`);
    check(meta.jwks_uri === `${issuer}/jwks`, 'jwks_uri is /jwks');
    check(meta.code_challenge_methods_supported?.includes('S256'), 'PKCE S256 advertised');
    check(!!meta.introspection_endpoint && !!meta.revocation_endpoint, 'introspection and revocation advertised');
    const jwks = await (await fetch(meta.jwks_uri)).json();
    const ktys = jwks.keys.map((k) => `${k.kty}/${k.crv ?? k.n.length}`);
    check(jwks.keys.length === 3 && jwks.keys.every((k) => k.kid && !k.d), `JWKS has 3 public keys with kid (${ktys.join(', ')})`);

    // client_credentials, one resource per signing algorithm.
    for (const [resource, alg, scope] of [
      [RESOURCE_ES, 'ES256', 'tickets.read admin.read'],
      [RESOURCE_RS, 'PS256', 'tickets.read'],
      [RESOURCE_ED, 'EdDSA', 'admin.read'],
    ]) {
      const cc = await tokenRequest(issuer, { grant_type: 'client_credentials', resource, scope });
      check(cc.status === 200, `client_credentials for ${resource}: ${cc.status}`);
      const { header, payload } = decodeJwt(cc.body.access_token);
      check(header.typ === 'at+jwt' && header.alg === alg && !!header.kid, `header typ=at+jwt alg=${alg} kid (${JSON.stringify(header)})`);
      check(verifyJwt(cc.body.access_token, jwks), `${alg} signature verifies against the JWKS`);
      check(payload.aud === resource && payload.iss === issuer && payload.client_id === CLIENT_ID
        && payload.scope === scope && payload.sub === CLIENT_ID && !!payload.jti
        && payload.exp > payload.iat, `claims aud/iss/client_id/scope/sub/jti/exp (${JSON.stringify(payload)})`);
      if (resource === RESOURCE_ES) check(payload.exp - payload.iat === 300, 'per-resource accessTokenTTL applies');
    }
    const foreign = await tokenRequest(issuer, { grant_type: 'client_credentials', resource: 'https://unknown.example.com', scope: 'tickets.read' });
    check(foreign.status === 400 && foreign.body.error === 'invalid_target', `unknown resource refused: ${foreign.body.error}`);

    // authorization_code + PKCE, automatic login and consent.
    const verifier = crypto.randomBytes(32).toString('base64url');
    const challenge = crypto.createHash('sha256').update(verifier).digest('base64url');
    const state = crypto.randomBytes(8).toString('hex');
    const { url: callback, hops } = await authorize(issuer, {
      client_id: CLIENT_ID,
      response_type: 'code',
      redirect_uri: REDIRECT_URI,
      scope: 'openid tickets.read accounts.read',
      resource: RESOURCE_ES,
      state,
      code_challenge: challenge,
      code_challenge_method: 'S256',
    });
    const code = callback.searchParams.get('code');
    check(!!code && callback.searchParams.get('state') === state && callback.searchParams.get('iss') === issuer,
      `redirected to redirect_uri with code, state and iss after ${hops} hops`);

    const noPkce = await tokenRequest(issuer, {
      grant_type: 'authorization_code', code, redirect_uri: REDIRECT_URI, code_verifier: 'x'.repeat(43),
    });
    check(noPkce.status === 400 && noPkce.body.error === 'invalid_grant', 'wrong code_verifier refused');

    // oidc-provider checks the verifier before it consumes the code, so the same code still works.
    const exchanged = await tokenRequest(issuer, {
      grant_type: 'authorization_code', code, redirect_uri: REDIRECT_URI, code_verifier: verifier,
    });
    check(exchanged.status === 200, `code exchange: ${exchanged.status} ${exchanged.body.error ?? ''}`);
    const at = decodeJwt(exchanged.body.access_token ?? 'e30.e30.');
    check(at.header.typ === 'at+jwt' && verifyJwt(exchanged.body.access_token, jwks), 'user access token is a verified at+jwt');
    check(at.payload.sub === 'demo-user' && at.payload.aud === RESOURCE_ES
      && at.payload.scope === 'tickets.read accounts.read' && at.payload.client_id === CLIENT_ID,
    `user token claims sub/aud/scope (${JSON.stringify(at.payload)})`);
    check(!!exchanged.body.refresh_token, 'refresh token issued without offline_access');
    check(!!exchanged.body.id_token, 'ID token issued for openid');

    // Refresh with rotation; the old refresh token must then be refused.
    const rt1 = exchanged.body.refresh_token;
    const refreshed = await tokenRequest(issuer, { grant_type: 'refresh_token', refresh_token: rt1 });
    check(refreshed.status === 200, `refresh: ${refreshed.status} ${refreshed.body.error ?? ''}`);
    const rt2 = refreshed.body.refresh_token;
    check(!!rt2 && rt2 !== rt1, 'refresh token rotated');
    const at2 = decodeJwt(refreshed.body.access_token ?? 'e30.e30.');
    check(at2.payload.aud === RESOURCE_ES && at2.payload.scope === 'tickets.read accounts.read'
      && at2.payload.jti !== at.payload.jti, 'refreshed access token keeps aud and scope');

    // Introspection sees the live refresh token.
    const introspect = async (token) => (await fetch(`${issuer}/token/introspection`, {
      method: 'POST',
      headers: { authorization: basicAuth(), 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token }),
    })).json();
    check((await introspect(rt2)).active === true, 'introspection: rotated refresh token active');

    const revoke = await fetch(`${issuer}/token/revocation`, {
      method: 'POST',
      headers: { authorization: basicAuth(), 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token: rt2, token_type_hint: 'refresh_token' }),
    });
    check(revoke.status === 200, `revocation: ${revoke.status}`);
    check((await introspect(rt2)).active === false, 'introspection: revoked refresh token inactive');
    const afterRevoke = await tokenRequest(issuer, { grant_type: 'refresh_token', refresh_token: rt2 });
    check(afterRevoke.status === 400 && afterRevoke.body.error === 'invalid_grant', 'revoked refresh token refused');
    const reuse = await tokenRequest(issuer, { grant_type: 'refresh_token', refresh_token: rt1 });
    check(reuse.status === 400 && reuse.body.error === 'invalid_grant', 'rotated-out refresh token refused');

    // prompt=consent runs the (automatic) consent again and still ends at the redirect_uri.
    const again = await authorize(issuer, {
      client_id: CLIENT_ID,
      response_type: 'code',
      redirect_uri: REDIRECT_URI,
      scope: 'tickets.write admin.read',
      resource: RESOURCE_ES,
      prompt: 'consent',
      state,
      code_challenge: challenge,
      code_challenge_method: 'S256',
    });
    const code2 = again.url.searchParams.get('code');
    check(!!code2, 'prompt=consent also redirects back with a code');
    const ex2 = await tokenRequest(issuer, {
      grant_type: 'authorization_code', code: code2, redirect_uri: REDIRECT_URI, code_verifier: verifier,
    });
    check(decodeJwt(ex2.body.access_token ?? 'e30.e30.').payload.scope === 'tickets.write admin.read',
      'second grant carries the newly requested scopes');
  } finally {
    server.child.kill('SIGTERM');
    rmSync(server.dir, { recursive: true, force: true });
  }

  if (failures) {
    process.stdout.write(`${failures} check(s) failed\n`);
    process.exit(1);
  }
  process.stdout.write('all checks passed\n');
}

main().catch((err) => {
  process.stdout.write(`FAIL ${err.stack ?? err}\n`);
  process.exit(1);
});
