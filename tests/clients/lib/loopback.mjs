// The client's loopback redirect URI (RFC 8252 §7.3): an HTTP listener on 127.0.0.1 that takes
// the authorization response (code, state, iss, or error) and hands it to whoever waits for it.

import * as http from 'node:http';

export class Loopback {
  constructor(port, path = '/callback') {
    this.port = port;
    this.path = path;
    this.uri = `http://127.0.0.1:${port}${path}`;
    this.waiters = [];
    this.received = [];
  }

  async start() {
    this.server = http.createServer((req, res) => {
      const u = new URL(req.url, this.uri);
      if (u.pathname !== this.path) {
        res.writeHead(404);
        res.end();
        return;
      }
      const params = Object.fromEntries(u.searchParams);
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<p>Authorization finished; you can close this window.</p>');
      const w = this.waiters.shift();
      if (w) w(params);
      else this.received.push(params);
    });
    await new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.port, '127.0.0.1', resolve);
    });
  }

  /** The next authorization response that reaches the listener. */
  next() {
    const ready = this.received.shift();
    if (ready) return Promise.resolve(ready);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  close() {
    this.server?.closeAllConnections?.();
    this.server?.close();
  }
}
