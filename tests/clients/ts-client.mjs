// An MCP host on the official TypeScript SDK, 1.x (`@modelcontextprotocol/sdk`) or 2.x
// (`@modelcontextprotocol/client`), run by tests/it/sdk_clients.rs through scopegate.
//
// Usage: node ts-client.mjs CONFIG.json   (see tests/src/sdk_clients.rs for the fields)
//
// It does what a desktop host does: meets the 401, lets the SDK discover, register (DCR, or its
// CIMD client_id URL) and build the authorization URL, opens that URL in a headless "browser"
// (lib/browser.mjs: cookies, redirects, Allow on the consent page), takes the code on its loopback
// redirect URI, calls tools, waits out its access token and calls again (the SDK refreshes after
// the 401), then, holding an ops-console token for `admin.read` only (registered through the SDK
// without a scope, authorized through its auth() for less), calls a tool needing
// `tickets.write` (403 insufficient_scope: the SDK steps up, or does not). Every HTTP exchange is
// logged to the wire log; the last stdout line is a JSON summary of what the host saw.

import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { WireLog } from './lib/wire.mjs';
import { browse, withdraw } from './lib/browser.mjs';
import { Loopback } from './lib/loopback.mjs';

const cfg = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const wire = new WireLog(cfg.wire_log, cfg.label);
const sdkFetch = wire.fetch('sdk');
const modern = cfg.protocol === '2026-07-28';

async function loadSdk(which) {
  if (which === 'v1') {
    const [{ Client }, { StreamableHTTPClientTransport }, { auth, UnauthorizedError }] = await Promise.all([
      import('@modelcontextprotocol/sdk/client/index.js'),
      import('@modelcontextprotocol/sdk/client/streamableHttp.js'),
      import('@modelcontextprotocol/sdk/client/auth.js'),
    ]);
    const { discoverOAuthServerInfo, registerClient } = await import('@modelcontextprotocol/sdk/client/auth.js');
    return {
      Client, StreamableHTTPClientTransport, auth, UnauthorizedError, discoverOAuthServerInfo, registerClient,
    };
  }
  const m = await import('@modelcontextprotocol/client');
  return {
    Client: m.Client,
    StreamableHTTPClientTransport: m.StreamableHTTPClientTransport,
    auth: m.auth,
    UnauthorizedError: m.UnauthorizedError,
    discoverOAuthServerInfo: m.discoverOAuthServerInfo,
    registerClient: m.registerClient,
  };
}
const sdk = await loadSdk(cfg.sdk);

/** The host's OAuthClientProvider: in-memory storage, the browser for redirects. */
class HostProvider {
  constructor(name, loopback) {
    this.name = name;
    this.loopback = loopback;
    this._tokens = undefined;
    this._client = undefined;
    this._verifier = undefined;
    this._state = undefined;
    this._discovery = undefined;
    this.pending = undefined;
    this.consents = [];
  }

  get redirectUrl() { return this.loopback.uri; }

  get clientMetadataUrl() { return cfg.registration === 'cimd' ? cfg.client_metadata_url : undefined; }

  get clientMetadata() {
    return {
      client_name: cfg.client_name,
      redirect_uris: [this.loopback.uri],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
      application_type: 'native',
    };
  }

  state() {
    this._state = randomBytes(16).toString('base64url');
    return this._state;
  }

  clientInformation() { return this._client; }

  saveClientInformation(info) {
    this._client = info;
    wire.note('client_information', { server: this.name, client_id: info.client_id });
  }

  tokens() { return this._tokens; }

  saveTokens(tokens) {
    this._tokens = tokens;
    wire.note('tokens_saved', { server: this.name, scope: tokens.scope });
  }

  /** What a host does when the authorization server refuses what it holds (the SDK asks). */
  invalidateCredentials(scope) {
    wire.note('invalidate_credentials', { server: this.name, scope });
    if (scope === 'all' || scope === 'tokens') this._tokens = undefined;
    if (scope === 'all' || scope === 'client') this._client = undefined;
    if (scope === 'all' || scope === 'verifier') this._verifier = undefined;
    if (scope === 'all' || scope === 'discovery') this._discovery = undefined;
  }

  saveCodeVerifier(v) { this._verifier = v; }

  codeVerifier() { return this._verifier; }

  discoveryState() { return this._discovery; }

  saveDiscoveryState(s) { this._discovery = s; }

  async redirectToAuthorization(url) {
    wire.note('open_browser', { server: this.name, scope: url.searchParams.get('scope') });
    const { consents } = await browse(url, this.loopback.uri, wire);
    this.consents.push(...consents);
    this.pending = await this.loopback.next();
    if (this.pending.state !== this._state) throw new Error('the redirect came back with another state');
  }

  /** The authorization response the browser delivered, once. */
  takePending() {
    const p = this.pending;
    this.pending = undefined;
    return p;
  }
}

function isUnauthorized(e) {
  return e instanceof sdk.UnauthorizedError || e?.name === 'UnauthorizedError';
}

/** Completes a pending authorization the way each SDK generation expects (2.x checks `iss`). */
async function finish(transport, provider) {
  const p = provider.takePending();
  if (!p) return false;
  if (p.error) throw new Error(`authorization refused: ${p.error}: ${p.error_description}`);
  if (cfg.sdk === 'v1') await transport.finishAuth(p.code);
  else await transport.finishAuth(new URLSearchParams(p));
  return true;
}

function newClient() {
  const options = cfg.sdk === 'v2'
    ? { versionNegotiation: { mode: modern ? { pin: '2026-07-28' } : 'legacy' } }
    : {};
  return new sdk.Client({ name: cfg.client_name, version: '1.0.0' }, options);
}

/** Connects, authorizing first when the server says 401. */
async function connect(url, provider) {
  for (let attempt = 0; attempt < 3; attempt += 1) {
    const transport = new sdk.StreamableHTTPClientTransport(new URL(url), { authProvider: provider, fetch: sdkFetch });
    const client = newClient();
    try {
      await client.connect(transport);
      return { client, transport };
    } catch (e) {
      if (!isUnauthorized(e) || !(await finish(transport, provider))) throw e;
    }
  }
  throw new Error('still unauthorized after authorizing');
}

/** Calls a tool; an authorization the SDK started meanwhile (step-up) is completed, then retried. */
async function call(session, provider, name, args) {
  for (let attempt = 0; attempt < 3; attempt += 1) {
    try {
      const r = await session.client.callTool({ name, arguments: args });
      // The tools echo the credential that reached them: keep only whether they answered.
      return { ok: !r.isError && typeof r.content?.[0]?.text === 'string' };
    } catch (e) {
      if (!isUnauthorized(e) || !(await finish(session.transport, provider))) throw e;
    }
  }
  throw new Error(`${name}: still unauthorized after authorizing`);
}

const sleep = (ms) => new Promise((r) => { setTimeout(r, ms); });

const summary = { label: cfg.label, sdk: cfg.sdk, protocol: cfg.protocol, steps: {} };
const loopback = new Loopback(cfg.redirect_port);
await loopback.start();
const sessions = [];
try {
  // 1. support-assistant: 401, discovery, registration, browser, code, tools.
  const support = new HostProvider('support-assistant', loopback);
  const s = await connect(cfg.support_url, support);
  sessions.push(s);
  summary.client_id = support.clientInformation()?.client_id;
  summary.protocol_negotiated = s.client.getNegotiatedProtocolVersion?.() ?? s.transport.protocolVersion;
  const tools = await s.client.listTools();
  summary.steps.tools = tools.tools.map((t) => t.name).sort();
  summary.steps.list_tickets = await call(s, support, 'list_tickets', {});
  summary.steps.consents = support.consents;

  // 2. Wait out the access token; the next call meets 401 and the SDK refreshes.
  wire.note('expiry_wait', { seconds: cfg.expiry_wait_s });
  await sleep(cfg.expiry_wait_s * 1000);
  summary.steps.after_expiry = await call(s, support, 'get_account', { account_id: 'acme' });

  // 3. ops-console with `admin.read` only (the host asks for least privilege through the SDK's
  // own auth()), then a tool that needs `tickets.write`: 403 insufficient_scope.
  const ops = new HostProvider('ops-console', loopback);
  if (cfg.registration === 'dcr') {
    // The host registers once, without tying the registration to a scope, then authorizes for
    // less. (Left to auth(), the registration would carry only the narrow scope, and an
    // authorization server that enforces registered scopes, as oidc-provider does, would refuse
    // the step-up.)
    const info = await sdk.discoverOAuthServerInfo(new URL(cfg.ops_url), { fetchFn: sdkFetch });
    const registered = await sdk.registerClient(info.authorizationServerUrl, {
      metadata: info.authorizationServerMetadata,
      clientMetadata: ops.clientMetadata,
      fetchFn: sdkFetch,
    });
    ops.saveClientInformation({ ...registered, issuer: String(info.authorizationServerUrl) });
  }
  const first = await sdk.auth(ops, { serverUrl: new URL(cfg.ops_url), scope: 'admin.read', fetchFn: sdkFetch });
  if (first === 'REDIRECT') {
    const p = ops.takePending();
    await sdk.auth(ops, {
      serverUrl: new URL(cfg.ops_url), authorizationCode: p.code, iss: p.iss, fetchFn: sdkFetch,
    });
  }
  summary.steps.ops_initial_scope = ops.tokens()?.scope;
  const o = await connect(cfg.ops_url, ops);
  sessions.push(o);
  summary.steps.admin_report = await call(o, ops, 'admin_report', {});
  try {
    summary.steps.update_ticket = await call(o, ops, 'update_ticket', { ticket_id: 'T-1', status: 'closed' });
  } catch (e) {
    summary.steps.update_ticket = { ok: false, error: String(e?.message ?? e) };
  }
  summary.steps.ops_final_scope = ops.tokens()?.scope;
  summary.ops_client_id = ops.clientInformation()?.client_id;

  // 4. (broker mode) The person withdraws support-assistant's access on the broker's
  // connected-apps page. Past the revocation feed's bound the host's next call meets 401, its
  // refresh is refused, and the SDK authorizes again through the browser.
  if (cfg.apps_url) {
    summary.steps.withdrawn = await withdraw(cfg.apps_url, summary.client_id, 'support-assistant', wire);
    wire.note('withdrawn', { grants: summary.steps.withdrawn });
    await sleep(cfg.revocation_wait_ms);
    const pages = support.consents.length;
    summary.steps.after_withdrawal = await call(s, support, 'list_tickets', {});
    summary.steps.reauthorized = support.consents.length > pages;
  }
  summary.ok = true;
} catch (e) {
  summary.ok = false;
  summary.error = String(e?.stack ?? e);
} finally {
  for (const x of sessions) await x.client.close().catch(() => {});
  loopback.close();
}
process.stdout.write(`${JSON.stringify(summary)}\n`);
process.exit(0);
