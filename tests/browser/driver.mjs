// Headless-browser driver for the end-to-end tests: drives Debian's chromium through
// playwright-core (over CDP; no Playwright-downloaded browser) and is itself driven by the
// Rust tests over stdin/stdout, one JSON object per line. Logs go to stderr only.
//
// Every command gets exactly one answer line, in order; every answer has "ok" (and "error" when
// false). A command carrying "id" gets it echoed back. Commands:
//   {"cmd":"open","url":U,"width":1280,"height":900,"locale":"en-US"}
//       closes the previous page and its context, opens a new one with that viewport and locale,
//       records every response from then on and navigates. On a 200 document it waits (20 s) for
//       document.documentElement.dataset.ready === "true", then sets window.__mentorstreamMarker.
//       -> {"ok":true,"status":S,"body":null | first 2000 chars of the document when S != 200}
//   {"cmd":"values"}
//       -> {"ok":true,"values":{KEY:{"value":data-value,"text":T[,"count":N]}},
//           "asOf":{KEY:{"text":T,"datetime":D[,"count":N]}}}
//          for [data-live=KEY] and [data-as-of=KEY]; first element per key, count when several.
//          D is the element's datetime attribute, else that of a <time> inside it, else null.
//   {"cmd":"text","selector":CSS}             -> {"ok":true,"texts":[trimmed textContent...]}
//   {"cmd":"attrs","selector":CSS}            -> {"ok":true,"elements":[{attribute: value}...]}
//   {"cmd":"waitValue","key":K,"notEqual":V,"timeoutMs":10000}   (or "equal":V)
//       waits until the first [data-live=K] has a data-value satisfying the condition
//       -> {"ok":true,"value":V2,"elapsedMs":MS,"reloaded":bool}  (reloaded: the marker set by
//          open is gone or changed); on timeout ok:false with the last "value" seen.
//   {"cmd":"waitAttr","selector":CSS,"attr":A,"equal":V,"timeoutMs":10000}
//       waits until the first element matching CSS has attribute A equal to V
//       -> {"ok":true,"value":V,"elapsedMs":MS,"reloaded":bool}; on timeout ok:false with the
//          last value seen.
//   {"cmd":"responses"}  -> {"ok":true,"responses":[{"url","status"}...]} since open
//   {"cmd":"screenshot","path":"/abs/file.png","fullPage":true}  -> {"ok":true}
//   {"cmd":"console"}    -> {"ok":true,"messages":[{"type","text"}...]} console + page errors
//   {"cmd":"axe"}        runs axe-core (pinned in package-lock.json) on the open page against
//       WCAG 2.1 A and AA -> {"ok":true,"violations":[{"id","impact","help","nodes":[CSS...]}]}
//   {"cmd":"close"}      -> closes the browser, answers {"ok":true}, exits 0
// On stdin EOF the browser is closed and the process exits 0.
// MENTORSTREAM_CHROMIUM overrides the browser binary (default /usr/bin/chromium).
import { createInterface } from 'node:readline';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

// axe-core's source, evaluated in the page over CDP (the pages' CSP does not apply there).
const AXE_SOURCE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
const AXE_TAGS = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'];

const READY_TIMEOUT_MS = 20_000;
const COMMAND_DEADLINE_MS = 60_000; // plus the command's own timeoutMs, if any
const log = (...args) => console.error('[driver]', ...args);

const browserPromise = chromium.launch({
  executablePath: process.env.MENTORSTREAM_CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--no-first-run'],
});
browserPromise.then(
  (b) => { log('chromium', b.version()); b.on('disconnected', () => log('browser disconnected')); },
  (e) => log('launch failed:', e.message));

let context = null, page = null, marker = null, responses = [], messages = [];

class Fail extends Error {
  constructor(message, extra = {}) { super(message); this.extra = extra; }
}

function needPage() {
  if (!page) throw new Fail('no page: send "open" first');
  return page;
}

// Reads the data-value of the first [data-live=key]; undefined when there is no such element.
const readValue = (key) => needPage().evaluate((k) => {
  const el = document.querySelector(`[data-live="${CSS.escape(k)}"]`);
  return el ? el.getAttribute('data-value') : undefined;
}, key);

const handlers = {
  async open({ url, width = 1280, height = 900, locale = 'en-US' }) {
    const browser = await browserPromise;
    if (context) await context.close().catch((e) => log('closing previous context:', e.message));
    context = page = marker = null;
    responses = []; messages = [];
    context = await browser.newContext({ viewport: { width, height }, locale });
    page = await context.newPage();
    page.on('response', (r) => responses.push({ url: r.url(), status: r.status() }));
    page.on('console', (m) => messages.push({ type: m.type(), text: m.text() }));
    page.on('pageerror', (e) => messages.push({ type: 'pageerror', text: String(e?.message ?? e) }));
    const response = await page.goto(url);
    const status = response ? response.status() : null;
    if (status !== 200) {
      const body = response ? (await response.text().catch(() => '')).slice(0, 2000) : null;
      return { status, body };
    }
    await page.waitForFunction(() => document.documentElement.dataset.ready === 'true', null,
      { timeout: READY_TIMEOUT_MS }).catch(() => {
      throw new Fail(`page did not set data-ready="true" within ${READY_TIMEOUT_MS} ms`, { status });
    });
    marker = randomUUID();
    await page.evaluate((m) => { window.__mentorstreamMarker = m; }, marker);
    return { status, body: null };
  },

  async values() {
    return needPage().evaluate(() => {
      const collect = (attr, describe) => {
        const out = Object.create(null);
        for (const el of document.querySelectorAll(`[${attr}]`)) {
          const key = el.getAttribute(attr);
          if (key in out) out[key].count = (out[key].count ?? 1) + 1;
          else out[key] = describe(el);
        }
        return out;
      };
      return {
        values: collect('data-live', (el) => ({
          value: el.getAttribute('data-value'), text: el.textContent.trim() })),
        asOf: collect('data-as-of', (el) => ({
          text: el.textContent.trim(),
          datetime: el.getAttribute('datetime')
            ?? el.querySelector('time')?.getAttribute('datetime') ?? null })),
      };
    });
  },

  async text({ selector }) {
    const texts = await needPage().evaluate((s) =>
      [...document.querySelectorAll(s)].map((el) => el.textContent.trim()), selector);
    return { texts };
  },

  async attrs({ selector }) {
    const elements = await needPage().evaluate((s) =>
      [...document.querySelectorAll(s)].map((el) =>
        Object.fromEntries([...el.attributes].map((a) => [a.name, a.value]))), selector);
    return { elements };
  },

  async waitValue({ key, equal, notEqual, timeoutMs = 10_000 }, receivedAt) {
    const p = needPage();
    if ((equal === undefined) === (notEqual === undefined)) {
      throw new Fail('waitValue needs exactly one of "equal" and "notEqual"');
    }
    const want = { key, equal: equal !== undefined, expected: equal ?? notEqual };
    const left = Math.max(1, timeoutMs - (Date.now() - receivedAt)); // 0 would mean no timeout
    let value;
    try {
      const handle = await p.waitForFunction(({ key, equal, expected }) => {
        const el = document.querySelector(`[data-live="${CSS.escape(key)}"]`);
        if (!el) return false;
        const v = el.getAttribute('data-value');
        return (equal ? v === expected : v !== expected) && { v };
      }, want, { timeout: left, polling: 20 });
      ({ v: value } = await handle.jsonValue());
    } catch (e) {
      const last = await readValue(key).catch(() => undefined);
      throw new Fail(`waitValue ${key}: ${e.message}`,
        { value: last ?? null, elapsedMs: Date.now() - receivedAt });
    }
    const elapsedMs = Date.now() - receivedAt;
    const seen = await p.evaluate(() => window.__mentorstreamMarker).catch(() => undefined);
    return { value, elapsedMs, reloaded: marker === null || seen !== marker };
  },

  async waitAttr({ selector, attr, equal, timeoutMs = 10_000 }, receivedAt) {
    const p = needPage();
    if (!selector || !attr || equal === undefined) throw new Fail('waitAttr needs "selector", "attr" and "equal"');
    const read = () => p.evaluate(({ selector, attr }) =>
      document.querySelector(selector)?.getAttribute(attr) ?? null, { selector, attr });
    const left = Math.max(1, timeoutMs - (Date.now() - receivedAt));
    try {
      await p.waitForFunction(({ selector, attr, equal }) =>
        document.querySelector(selector)?.getAttribute(attr) === equal,
      { selector, attr, equal }, { timeout: left, polling: 20 });
    } catch (e) {
      const last = await read().catch(() => undefined);
      throw new Fail(`waitAttr ${selector} [${attr}]: ${e.message}`,
        { value: last ?? null, elapsedMs: Date.now() - receivedAt });
    }
    const seen = await p.evaluate(() => window.__mentorstreamMarker).catch(() => undefined);
    return { value: equal, elapsedMs: Date.now() - receivedAt, reloaded: marker === null || seen !== marker };
  },

  async responses() { needPage(); return { responses: [...responses] }; },

  async axe() {
    const p = needPage();
    await p.evaluate(AXE_SOURCE);
    const result = await p.evaluate((tags) =>
      window.axe.run(document, { runOnly: { type: 'tag', values: tags } }), AXE_TAGS);
    const violations = result.violations.map((v) => ({
      id: v.id, impact: v.impact, help: v.help,
      nodes: v.nodes.slice(0, 5).map((n) => n.target.join(' ')),
    }));
    return { violations };
  },

  async screenshot({ path, fullPage = false }) {
    if (!path) throw new Fail('screenshot needs "path"');
    await needPage().screenshot({ path, fullPage });
    return {};
  },

  async console() { needPage(); return { messages: [...messages] }; },
};

function answer(obj) {
  return new Promise((resolve) => process.stdout.write(`${JSON.stringify(obj)}\n`, resolve));
}

process.on('unhandledRejection', (e) => log('unhandled rejection:', e?.stack ?? e));

// Bounds every command so that a stuck page yields an answer instead of a hang.
function withDeadline(promise, ms, what) {
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Fail(`${what}: no result within ${ms} ms`)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
let closeCmd = null;
for await (const line of lines) {
  if (!line.trim()) continue;
  const receivedAt = Date.now();
  let cmd = null, reply;
  try {
    cmd = JSON.parse(line);
    if (cmd?.cmd === 'close') { closeCmd = cmd; break; }
    const handler = Object.hasOwn(handlers, cmd?.cmd) && handlers[cmd.cmd];
    if (!handler) throw new Fail(`unknown command: ${JSON.stringify(cmd?.cmd ?? null)}`);
    const budget = COMMAND_DEADLINE_MS + (Number(cmd.timeoutMs) || 0);
    reply = { ok: true, ...await withDeadline(handler(cmd, receivedAt), budget, cmd.cmd) };
  } catch (e) {
    log(`${cmd?.cmd ?? 'input'} failed:`, e?.message ?? e); // in full, with any call log
    reply = { ok: false, error: String(e?.message ?? e).split('\n')[0], ...e?.extra };
  }
  await answer({ ...(cmd?.id !== undefined && { id: cmd.id }), ...reply });
}
// "close" or stdin EOF: close the browser; answer "close" once it is closed.
const browser = await browserPromise.catch(() => null);
await withDeadline(browser?.close() ?? Promise.resolve(), 10_000, 'close')
  .catch((e) => log('closing browser:', e.message));
if (closeCmd) await answer({ ...(closeCmd.id !== undefined && { id: closeCmd.id }), ok: true });
process.exit(0);
