// A headless "browser" for the authorization step: keeps cookies, follows redirects one hop at a
// time (each hop logged), and on the broker's consent page submits the form with Allow, as a user
// would. It stops once it has delivered the redirect to the client's loopback listener.

const MAX_HOPS = 25;

class CookieJar {
  constructor() {
    this.cookies = [];
  }

  store(url, response) {
    const host = new URL(url).host;
    for (const line of response.headers.getSetCookie?.() ?? []) {
      const [pair, ...attrs] = line.split(';').map((s) => s.trim());
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq);
      const value = pair.slice(eq + 1);
      const pathAttr = attrs.find((a) => a.toLowerCase().startsWith('path='));
      const path = pathAttr ? pathAttr.slice(5) : '/';
      this.cookies = this.cookies.filter((c) => !(c.host === host && c.name === name && c.path === path));
      this.cookies.push({ host, name, value, path });
    }
  }

  header(url) {
    const u = new URL(url);
    const matching = this.cookies.filter((c) => c.host === u.host && u.pathname.startsWith(c.path));
    return matching.map((c) => `${c.name}=${c.value}`).join('; ');
  }
}

function unescapeHtml(s) {
  return s.replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');
}

/** The text that says whether the broker vouches for the client, tags removed. */
function verifiedText(html) {
  const m = html.match(/id="client-verified">([\s\S]*?)<\/(?:p|span)>/);
  return m ? unescapeHtml(m[1].replace(/<[^>]*>/g, '')).replace(/\s+/g, ' ').trim() : undefined;
}

/** The consent page's form and what it shows, or undefined for any other page. */
export function parseConsent(html) {
  const form = html.match(/<form method="post" action="([^"]+)">([\s\S]*?)<\/form>/);
  if (!form) return undefined;
  const hidden = {};
  for (const m of form[2].matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)) {
    hidden[m[1]] = unescapeHtml(m[2]);
  }
  const text = (id) => {
    const m = html.match(new RegExp(`id="${id}">([^<]*)<`));
    return m ? unescapeHtml(m[1]) : undefined;
  };
  const scopes = [...(html.match(/<ul id="scopes">([\s\S]*?)<\/ul>/)?.[1] ?? '')
    .matchAll(/<code>([^<]*)<\/code>/g)].map((m) => unescapeHtml(m[1]));
  return {
    action: unescapeHtml(form[1]),
    hidden,
    shows: {
      client_name: text('client-name'),
      claimed_name: text('client-claimed-name'),
      verified: verifiedText(html),
      client_id: text('client-id'),
      server: text('server'),
      redirect_host: text('redirect-host'),
      scopes,
    },
  };
}

/**
 * Opens `authorizationUrl` and walks until the redirect to `redirectUri` has been delivered.
 * `wire` logs each hop as actor "browser". Returns what the consent pages showed.
 */
export async function browse(authorizationUrl, redirectUri, wire) {
  const jar = new CookieJar();
  const logged = wire.fetch('browser');
  const consents = [];
  let url = String(authorizationUrl);
  let init = { method: 'GET' };
  for (let hop = 0; hop < MAX_HOPS; hop += 1) {
    const headers = new Headers(init.headers ?? {});
    const cookie = jar.header(url);
    if (cookie) headers.set('cookie', cookie);
    const response = await logged(url, { ...init, headers, redirect: 'manual' });
    jar.store(url, response);
    if (url.startsWith(redirectUri)) {
      await response.text();
      return { consents };
    }
    const location = response.headers.get('location');
    if (response.status >= 300 && response.status < 400 && location) {
      await response.body?.cancel();
      url = new URL(location, url).toString();
      init = { method: 'GET' };
      continue;
    }
    const body = await response.text();
    const consent = response.status === 200 ? parseConsent(body) : undefined;
    if (!consent) {
      throw new Error(`browser: stuck at ${response.status} ${url}: ${body.slice(0, 300)}`);
    }
    consents.push({ ...consent.shows, framing: {
      'x-frame-options': response.headers.get('x-frame-options'),
      'content-security-policy': response.headers.get('content-security-policy'),
    } });
    const form = new URLSearchParams({ ...consent.hidden, decision: 'approve' });
    url = new URL(consent.action, url).toString();
    init = {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: form.toString(),
    };
  }
  throw new Error(`browser: more than ${MAX_HOPS} hops`);
}

/**
 * The person on the broker's connected-apps page: opens `appsUrl` (signing in through the
 * identity provider, cookies kept), then presses Withdraw on every grant of `clientId` on
 * `server`. `wire` logs each hop as actor "browser". Returns how many withdrawals answered 303.
 */
export async function withdraw(appsUrl, clientId, server, wire) {
  const jar = new CookieJar();
  const logged = wire.fetch('browser');
  const send = async (url, init) => {
    const headers = new Headers(init.headers ?? {});
    const cookie = jar.header(url);
    if (cookie) headers.set('cookie', cookie);
    const response = await logged(url, { ...init, headers, redirect: 'manual' });
    jar.store(url, response);
    return response;
  };
  let url = String(appsUrl);
  for (let hop = 0; hop < MAX_HOPS; hop += 1) {
    const response = await send(url, { method: 'GET' });
    const location = response.headers.get('location');
    if (response.status >= 300 && response.status < 400 && location) {
      await response.body?.cancel();
      url = new URL(location, url).toString();
      continue;
    }
    const body = await response.text();
    if (response.status !== 200 || !body.includes('Connected applications')) {
      throw new Error(`browser: no connected-apps page at ${response.status} ${url}`);
    }
    let withdrawn = 0;
    for (const [, , row] of body.matchAll(/<tr data-grant="([^"]+)">([\s\S]*?)<\/tr>/g)) {
      const cells = unescapeHtml(row);
      if (!cells.includes(`<code>${clientId}</code>`) || !cells.includes(`<td>${server}</td>`)) continue;
      const action = unescapeHtml(row.match(/<form method="post" action="([^"]+)">/)[1]);
      const form = new URLSearchParams({
        grant: unescapeHtml(row.match(/name="grant" value="([^"]*)"/)[1]),
        csrf: unescapeHtml(row.match(/name="csrf" value="([^"]*)"/)[1]),
      });
      const r = await send(new URL(action, url).toString(), {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: form.toString(),
      });
      await r.body?.cancel();
      if (r.status === 303) withdrawn += 1;
    }
    return withdrawn;
  }
  throw new Error(`browser: more than ${MAX_HOPS} hops`);
}
