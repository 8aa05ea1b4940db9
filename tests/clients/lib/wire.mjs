// The wire log: every HTTP exchange a test client makes, one JSON object per line, with tokens,
// codes and secrets replaced by a short SHA-256 so that rotation stays visible and nothing
// secret lands in a file. The Rust tests assert on this log, not on what the SDK reports.

import { createHash } from 'node:crypto';
import { appendFileSync } from 'node:fs';

const SECRET_KEYS = new Set([
  'access_token', 'refresh_token', 'id_token', 'code', 'client_secret', 'code_verifier', 'token',
  'subject_token', 'csrf', 'request',
]);
const KEPT_HEADERS = [
  'www-authenticate', 'mcp-session-id', 'mcp-protocol-version', 'mcp-method', 'mcp-name',
  'location', 'content-type', 'x-frame-options', 'content-security-policy',
];

export function digest(value) {
  return `sha256:${createHash('sha256').update(String(value)).digest('hex').slice(0, 16)}`;
}

function redactAuthorization(v) {
  if (!v) return undefined;
  const [scheme, rest] = v.split(' ', 2);
  return scheme.toLowerCase() === 'bearer' ? `Bearer ${digest(rest)}` : `${scheme} <redacted>`;
}

function redactParams(params) {
  const out = {};
  for (const [k, v] of params) out[k] = SECRET_KEYS.has(k) ? digest(v) : v;
  return out;
}

export function redactUrl(raw) {
  try {
    const u = new URL(raw);
    for (const k of [...u.searchParams.keys()]) {
      if (SECRET_KEYS.has(k)) u.searchParams.set(k, digest(u.searchParams.get(k)));
    }
    return u.toString();
  } catch {
    return raw;
  }
}

export function redactJson(v) {
  if (Array.isArray(v)) return v.map(redactJson);
  if (v && typeof v === 'object') {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => (
      [k, SECRET_KEYS.has(k) && typeof x === 'string' ? digest(x) : redactJson(x)])));
  }
  return v;
}

function pickHeaders(headers) {
  const out = {};
  for (const name of KEPT_HEADERS) {
    const v = headers.get(name);
    if (v !== null) out[name] = name === 'location' ? redactUrl(v) : v;
  }
  return out;
}

function requestBody(body, contentType) {
  if (typeof body !== 'string') {
    if (body instanceof URLSearchParams) return { form: redactParams(body) };
    return undefined;
  }
  if ((contentType ?? '').includes('x-www-form-urlencoded')) {
    return { form: redactParams(new URLSearchParams(body)) };
  }
  try {
    const j = JSON.parse(body);
    // A JSON-RPC message: its method and the name it acts on; other JSON (registration) in full.
    if (j && j.jsonrpc) return { jsonrpc: { method: j.method, name: j.params?.name, id: j.id } };
    return { json: redactJson(j) };
  } catch {
    return undefined;
  }
}

/** Logs exchanges to `path`, tagged with `who` (the SDK or "browser"). */
export class WireLog {
  constructor(path, who) {
    this.path = path;
    this.who = who;
  }

  async record(actor, url, init, response) {
    const reqHeaders = new Headers(init?.headers ?? {});
    const entry = {
      t: Date.now(),
      client: this.who,
      actor,
      method: (init?.method ?? 'GET').toUpperCase(),
      url: redactUrl(String(url)),
      req: {
        authorization: redactAuthorization(reqHeaders.get('authorization')),
        headers: pickHeaders(reqHeaders),
        body: requestBody(init?.body, reqHeaders.get('content-type')),
      },
      status: response?.status,
      resp: { headers: response ? pickHeaders(response.headers) : {} },
    };
    const type = response?.headers.get('content-type') ?? '';
    if (response && type.includes('application/json')) {
      try {
        entry.resp.json = redactJson(await response.clone().json());
      } catch {
        // Not JSON after all: the status and headers say enough.
      }
    }
    appendFileSync(this.path, `${JSON.stringify(entry)}\n`);
  }

  /** A fetch that logs every exchange, as `actor` ("sdk" for the SDK's own requests). */
  fetch(actor, base = globalThis.fetch) {
    return async (url, init) => {
      let u = url;
      let i = init;
      if (url instanceof Request) {
        u = url.url;
        i = { method: url.method, headers: url.headers, ...init };
      }
      const response = await base(url, init);
      await this.record(actor, u, i, response);
      return response;
    };
  }

  note(event, detail) {
    appendFileSync(this.path, `${JSON.stringify({ t: Date.now(), client: this.who, event, ...detail })}\n`);
  }
}
