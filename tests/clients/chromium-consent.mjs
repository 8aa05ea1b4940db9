// One authorization in a real browser: Debian's Chromium, headless, driven by playwright-core.
// Run by tests/it/sdk_browser.rs, which hosts the loopback redirect URI and the framing page.
//
// Usage: node chromium-consent.mjs CONFIG.json
//   { "authorization_url", "redirect_uri", "framer_url", "chromium" }
// It loads the broker's consent page, reads what it shows, clicks Allow, follows the flow until
// the browser lands on the redirect URI, then loads a page that frames the consent page and reports
// whether the frame was refused. Prints one JSON line; never prints the code.

import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const cfg = JSON.parse(readFileSync(process.argv[2], 'utf8'));
// The flags that work on these machines: no sandbox as root, and no background networking (the
// closed network refuses Chromium's own connections).
const ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

const out = {};
const profile = mkdtempSync(join(tmpdir(), 'scopegate-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: cfg.chromium, headless: true, args: ARGS,
});
try {
  const page = await context.newPage();
  const response = await page.goto(cfg.authorization_url);
  out.consent_status = response.status();
  out.shows = {
    title: await page.title(),
    client_name: await page.textContent('#client-name'),
    client_id: await page.textContent('#client-id'),
    server: await page.textContent('#server'),
    redirect_host: await page.textContent('#redirect-host'),
    scopes: await page.$$eval('#scopes code', (els) => els.map((e) => e.textContent)),
  };
  const landed = page.waitForURL((u) => u.toString().startsWith(cfg.redirect_uri), { timeout: 60000 });
  await page.click('button[value="approve"]');
  await landed;
  const final = new URL(page.url());
  out.landed = `${final.origin}${final.pathname}`;
  out.landed_params = [...final.searchParams.keys()].sort();
  out.landed_iss = final.searchParams.get('iss');
  out.landed_body = await page.textContent('body');

  // A page that frames the consent page: Chromium must refuse to render it in the frame.
  const framer = await context.newPage();
  await framer.goto(cfg.framer_url);
  await framer.waitForTimeout(1500);
  const frame = framer.frames().find((f) => f !== framer.mainFrame());
  out.frame_url = frame ? frame.url() : null;
  let framedContent = null;
  if (frame) {
    try {
      framedContent = await frame.$eval('#client-name', (e) => e.textContent);
    } catch {
      framedContent = null;
    }
  }
  out.framed_consent_rendered = framedContent !== null;
  out.ok = true;
} catch (e) {
  out.ok = false;
  out.error = String(e?.stack ?? e);
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
process.stdout.write(`${JSON.stringify(out)}\n`);
