// Opens a deploykit report.html in headless Chromium (playwright-core, Debian's chromium) and says
// what a reader sees: what is in the first screen, where the plot labels and legends are laid out,
// and every request the page tried to make (each one is blocked: the page must need none).
//
// Usage: node render.mjs REQUEST.json, with {page, modules, chromium, width, height, screenshot?};
// prints the JSON result on stdout. `modules` holds node_modules (the cache deploykit fills with
// `npm ci` from this folder's package-lock.json), as for harness.mjs.
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

import { CHROMIUM_FLAGS } from './browser.mjs';

function inPage() {
  const box = (el) => {
    if (!el) return null;
    const r = el.getBoundingClientRect();
    return { left: r.left, top: r.top, right: r.right, bottom: r.bottom, width: r.width, height: r.height };
  };
  const shown = (el) => !!el && el.checkVisibility({ checkOpacity: true, checkVisibilityCSS: true }) &&
    el.getBoundingClientRect().width > 0;
  const texts = (sel) => Array.from(document.querySelectorAll(sel)).map((el) => ({
    id: el.closest('[id]') ? el.closest('[id]').id : null, text: el.textContent.trim(), box: box(el), shown: shown(el),
  }));
  const verdict = document.getElementById('verdict');
  const word = verdict && verdict.querySelector('.word');
  const plots = {};
  for (const fig of document.querySelectorAll('figure[id^="plot-"]')) {
    plots[fig.id] = {
      box: box(fig.querySelector('svg.plot')),
      labels: texts(`#${fig.id} [id^="point-label-"] text`),
      legend: box(fig.querySelector('[id$="-legend"]')),
      axes: box(fig.querySelector('[id$="-axes"]')),
      zeros: texts(`#${fig.id} [id^="parity-zero-label-"] text`),
      bars: Array.from(fig.querySelectorAll('[id^="parity-bar-"]')).map((el) => el.id),
      xticks: texts(`#${fig.id} [id*="-xtick_"] text`).filter((t) => t.text && t.shown).map((t) => t.text),
      yticks: texts(`#${fig.id} [id*="-ytick_"] text`).filter((t) => t.text && t.shown).map((t) => t.text),
    };
  }
  const order = Array.from(document.querySelectorAll('#verdict, [id^="notice-"], h2, table[id]'))
    .map((el) => ({ tag: el.tagName.toLowerCase(), id: el.id, text: el.textContent.trim().slice(0, 80), top: box(el).top }));
  return {
    title: document.title,
    viewport: { width: window.innerWidth, height: window.innerHeight },
    verdict: verdict && { box: box(verdict), word: word ? word.textContent.trim() : null, word_box: box(word),
      shown: shown(verdict), color: word ? getComputedStyle(word).color : null, className: verdict.className,
      text: verdict.textContent.replace(/\s+/g, ' ').trim() },
    notices: texts('[id^="notice-"]'),
    order,
    plots,
    plots_rendered: document.body.getAttribute('data-plots-rendered'),
  };
}

async function main() {
  const request = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
  const requireFrom = createRequire(path.join(request.modules, 'package.json'));
  const { chromium } = requireFrom('playwright-core');
  const browser = await chromium.launch({ executablePath: request.chromium, headless: true, args: CHROMIUM_FLAGS });
  const pageUrl = pathToFileURL(path.resolve(request.page)).href;
  const requests = new Set();
  const console_ = [];
  const errors = [];
  try {
    const context = await browser.newContext({ viewport: { width: request.width, height: request.height },
      deviceScaleFactor: 1, offline: true });
    await context.route('**/*', (route) => {
      const url = route.request().url();
      requests.add(url);
      return url === pageUrl ? route.continue() : route.abort('blockedbyclient');
    });
    const page = await context.newPage();
    page.on('console', (m) => console_.push(`${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('request', (r) => { if (!r.url().startsWith('data:')) requests.add(r.url()); });
    await page.goto(pageUrl, { waitUntil: 'load' });
    await page.evaluate(() => document.fonts.ready);
    const seen = await page.evaluate(inPage);
    if (request.screenshot) await page.screenshot({ path: request.screenshot });
    process.stdout.write(JSON.stringify({ ok: true, page: pageUrl, requests: [...requests], console: console_, errors, ...seen }) + '\n');
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  process.stdout.write(JSON.stringify({ ok: false, error: String(e && e.stack || e) }) + '\n');
  process.exit(1);
});
