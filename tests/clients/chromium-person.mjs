// The person's side of the broker in a real browser: Debian's Chromium, headless, driven by
// playwright-core. Run by tests/it/person_pages.rs in two parts over one browser profile (its
// cookies are the person's browser):
//   part "consent": opens each of cfg.authorizations in turn; where the broker shows its consent
//     page, reads what it shows, screenshots it, reaches Allow with the keyboard and presses it;
//     where it remembers the approval, the browser just lands on the redirect URI.
//   part "read": loads each of cfg.pages (consent pages) and reads what they show.
//   part "apps": opens the connected-apps page (signing in through the identity provider),
//     reads the grants, screenshots it, and withdraws every grant on cfg.withdraw_server.
// Usage: node chromium-person.mjs CONFIG.json. Prints one JSON line; never prints a code.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const cfg = JSON.parse(readFileSync(process.argv[2], 'utf8'));
// The flags that work on these machines: no sandbox as root, and no background networking (the
// closed network refuses Chromium's own connections).
const ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

const out = { part: cfg.part, steps: [] };
const context = await chromium.launchPersistentContext(cfg.profile, {
  executablePath: cfg.chromium, headless: true, args: ARGS, viewport: { width: 960, height: 900 },
});
const landedOn = (page) => page.url().startsWith(cfg.redirect_uri);

try {
  const page = await context.newPage();
  const text = async (sel) => ((await page.$(sel)) ? (await page.textContent(sel)).trim() : null);
  const attrs = (sel, name) => page.$$eval(sel, (els, n) => els.map((e) => e.getAttribute(n)), name);

  const shows = async () => ({
    title: await page.title(),
    heading: await text('h1'),
    client_name: await text('#client-name'),
    claimed_name: await text('#client-claimed-name'),
    verified: await text('#client-verified'),
    redirect_host: await text('#redirect-host'),
    redirect_local: (await page.$('#redirect-local')) !== null,
    server: await text('#server'),
    scopes: await attrs('#scopes li', 'data-scope'),
  });

  if (cfg.part === 'read') {
    // Consent pages only read, never answered.
    for (const p of cfg.pages) {
      const response = await page.goto(p.url);
      out.steps.push({ name: p.name, status: response.status(), ...(await shows()) });
      if (p.screenshot) await page.screenshot({ path: join(cfg.shots, p.screenshot), fullPage: true });
    }
  } else if (cfg.part === 'consent') {
    for (const a of cfg.authorizations) {
      const step = { name: a.name };
      await page.goto(a.url);
      step.page = !landedOn(page);
      if (step.page) {
        step.title = await page.title();
        step.heading = await text('h1');
        step.client_name = await text('#client-name');
        step.verified = await text('#client-verified');
        step.redirect_host = await text('#redirect-host');
        step.redirect_local = (await page.$('#redirect-local')) !== null;
        step.server = await text('#server');
        step.server_description = await text('#server-description');
        step.scopes = await attrs('#scopes li', 'data-scope');
        step.kept = await attrs('#scopes-kept li', 'data-scope');
        step.scope_texts = await page.$$eval('#scopes li', (els) => els.map((e) => e.textContent.trim()));
        if (a.screenshot) await page.screenshot({ path: join(cfg.shots, a.screenshot), fullPage: true });
        // The keyboard alone: Tab through the page and note where the focus goes.
        step.focus = [];
        for (let i = 0; i < 4; i += 1) {
          await page.keyboard.press('Tab');
          step.focus.push(await page.evaluate(() => {
            const e = document.activeElement;
            return e ? `${e.tagName.toLowerCase()}:${(e.textContent || '').trim().slice(0, 40)}` : null;
          }));
        }
        const landed = page.waitForURL((u) => u.toString().startsWith(cfg.redirect_uri), { timeout: 60000 });
        await page.focus('button[value="approve"]');
        await page.keyboard.press('Enter');
        await landed;
      }
      step.landed = landedOn(page);
      out.steps.push(step);
    }
  } else {
    await page.goto(cfg.apps_url);
    out.final_path = new URL(page.url()).pathname;
    out.subject = await text('#subject');
    const rows = () => page.$$eval('#grants tbody tr', (trs) => trs.map((tr) => ({
      id: tr.getAttribute('data-grant'),
      client: tr.children[0].textContent.replace(/\s+/g, ' ').trim(),
      server: tr.children[1].textContent.trim(),
      scopes: tr.children[2].textContent.replace(/\s+/g, ' ').trim(),
    })));
    out.grants = await rows();
    if (cfg.shots) await page.screenshot({ path: join(cfg.shots, 'apps.png'), fullPage: true });
    out.withdrawn = [];
    for (const g of out.grants.filter((r) => r.server === cfg.withdraw_server)) {
      await Promise.all([
        page.waitForNavigation({ timeout: 30000 }),
        page.click(`tr[data-grant="${g.id}"] button`),
      ]);
      out.withdrawn.push(g.id);
    }
    out.notice = await text('#notice');
    out.after = await rows();
  }
  out.ok = true;
} catch (e) {
  out.ok = false;
  out.error = String(e?.stack ?? e);
} finally {
  await context.close();
}
process.stdout.write(`${JSON.stringify(out)}\n`);
