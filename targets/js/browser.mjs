// The browser check: the same bundle loaded by a small page in headless Chromium, served from
// 127.0.0.1, driven with playwright-core (Debian's /usr/bin/chromium; no browser download).
//
// runInBrowser(request, requireFrom, backend, helpers) returns what harness.mjs returns for a Node
// backend: parity writes the outputs, latency returns raw timings and load/first-inference times.
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { performance } from 'node:perf_hooks';

import { sample, sampling } from './sampling.mjs';

export const CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

const PAGE = `<!doctype html><html><head><meta charset="utf-8"><title>deploykit tfjs check</title>
<script src="/lib/tf.min.js"></script><script src="/lib/tf-backend-wasm.min.js"></script></head><body><script>
let model, layers, tensors, inputs, outputs;
async function fetchTensors() {
  const index = await (await fetch('/inputs.json')).json();
  const bin = await (await fetch('/inputs.bin')).arrayBuffer();
  const C = {float32: Float32Array, int32: Int32Array, bool: Uint8Array};
  tensors = {};
  for (const [n, t] of Object.entries(index)) tensors[n] = {...t, data: new C[t.dtype](bin.slice(t.offset, t.offset + t.length))};
}
function feedRow(i) {
  const byNode = {};
  for (const [k, node] of inputs) {
    const t = tensors[k]; const row = t.shape.slice(1); const size = row.reduce((a, b) => a * b, 1);
    byNode[node] = tf.tensor(t.data.subarray(i * size, (i + 1) * size), [1, ...row], t.dtype);
  }
  return byNode;
}
let dynamic = false;  // control flow (LSTM/GRU while loops): executeAsync, found on the first call
async function call(byNode) {
  let out;
  if (layers) out = model.predict(inputs.map(([, node]) => byNode[node]));
  else {
    const names = outputs.map(([, node]) => node);
    if (!dynamic) {
      try { out = model.execute(byNode, names); } catch (err) {
        if (!/executeAsync/.test(String(err && err.message))) throw err;
        dynamic = true;
      }
    }
    if (dynamic) out = await model.executeAsync(byNode, names);
  }
  return Array.isArray(out) ? out : [out];
}
window.dk = {
  async setup(backend) {
    if (backend === 'wasm') tf.wasm.setWasmPaths('/lib/');
    if (!(await tf.setBackend(backend))) throw new Error('backend ' + backend + ' is not available in this browser');
    await tf.ready();
    await fetchTensors();
    return {backend: tf.getBackend(), version: tf.version.tfjs, isolated: self.crossOriginIsolated};
  },
  async load() {
    const t0 = performance.now();
    layers = (await (await fetch('/bundle/model.json')).json()).format === 'layers-model';
    model = await (layers ? tf.loadLayersModel : tf.loadGraphModel)('/bundle/model.json');
    const ms = performance.now() - t0;
    if (layers) {
      inputs = model.inputNames.map((n) => [n, n]);
      outputs = model.outputNames.map((n) => [n, n]);
    } else {
      inputs = Object.entries(model.signature.inputs).map(([k, v]) => [k, v.name]);
      outputs = Object.entries(model.signature.outputs).map(([k, v]) => [k, v.name]);
    }
    return ms;
  },
  async parity() {
    const rows = tensors[inputs[0][0]].shape[0];
    const result = Object.fromEntries(outputs.map(([k]) => [k, {shape: null, data: []}]));
    for (let i = 0; i < rows; i++) {
      const feed = feedRow(i); const out = await call(feed);
      out.forEach((y, j) => { const r = result[outputs[j][0]]; r.shape = [rows, ...y.shape.slice(1)]; r.data.push(...y.dataSync()); });
      tf.dispose([...Object.values(feed), ...out]);
    }
    return result;
  },
  // first call and warm-up; then timed calls in batches (timeCalls) until Node's sampling.mjs says stop
  async warm(warmup, maxSeconds) {
    const feed = feedRow(0);
    this.once = async () => { const out = await call(feed); out.forEach((y) => y.dataSync()); tf.dispose(out); };
    const t = performance.now(); await this.once(); const first = performance.now() - t;
    const warmDeadline = performance.now() + maxSeconds * 1000;
    for (let i = 0; i < warmup; i++) { await this.once(); if (performance.now() > warmDeadline) break; }
    return first;
  },
  // up to k timed calls, stopping after the first that ends more than s seconds from now
  async timeCalls(k, s) {
    const batch = []; const deadline = performance.now() + s * 1000;
    for (let i = 0; i < k; i++) {
      const t = performance.now(); await this.once(); const end = performance.now(); batch.push(end - t);
      if (end > deadline) break;
    }
    return batch;
  },
};
</script></body></html>`;

function serve(request, requireFrom, weightPaths) {
  const bundleDir = path.dirname(request.bundle);
  const manifest = JSON.parse(fs.readFileSync(request.bundle, 'utf8'));
  const files = new Map([['/', null], ['/bundle/model.json', request.bundle],
    ['/inputs.json', request.inputs], ['/inputs.bin', request.inputs.replace(/\.json$/, '.bin')]]);
  // Only the shards model.json lists, each checked to stay inside the bundle folder.
  for (const full of weightPaths(manifest, bundleDir)) files.set('/bundle/' + path.relative(bundleDir, full).split(path.sep).join('/'), full);
  const wasmDist = path.dirname(requireFrom.resolve('@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm'));
  for (const f of fs.readdirSync(wasmDist)) {
    if (f.endsWith('.wasm') || f === 'tf-backend-wasm.min.js') files.set('/lib/' + f, path.join(wasmDist, f));
  }
  files.set('/lib/tf.min.js', path.join(path.dirname(requireFrom.resolve('@tensorflow/tfjs')), 'tf.min.js'));
  const types = { '.js': 'text/javascript', '.wasm': 'application/wasm', '.json': 'application/json' };
  const server = http.createServer((req, res) => {
    const url = decodeURIComponent(new URL(req.url, 'http://127.0.0.1').pathname);
    const headers = { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' };
    if (!files.has(url)) { res.writeHead(404, headers); res.end(); return; }
    const file = files.get(url);
    res.writeHead(200, { ...headers, 'Content-Type': file ? types[path.extname(file)] || 'application/octet-stream' : 'text/html' });
    res.end(file ? fs.readFileSync(file) : PAGE);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

function rendererPeakRssMb(rootPid) {
  // The largest VmHWM among this harness's Chromium renderer processes (where the model runs).
  const parent = new Map();
  const pids = fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p));
  for (const pid of pids) {
    try { parent.set(pid, fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')[1]); } catch { /* gone */ }
  }
  const ours = (pid) => { for (let p = pid, n = 0; p && p !== '0' && n < 20; p = parent.get(p), n++) if (p === String(rootPid)) return true; return false; };
  let peak = 0;
  for (const pid of pids) {
    try {
      if (!ours(pid) || !fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('--type=renderer')) continue;
      const line = fs.readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmHWM:'));
      peak = Math.max(peak, Number(line.split(/\s+/)[1]) / 1024);
    } catch { /* process gone */ }
  }
  return peak;
}

export async function runInBrowser(request, requireFrom, backend, { weightPaths, writeTensors }) {
  const { chromium } = requireFrom('playwright-core');
  const executablePath = request.chromium || '/usr/bin/chromium';
  if (!fs.existsSync(executablePath)) throw new Error(`Chromium not found at ${executablePath}`);
  const server = await serve(request, requireFrom, weightPaths);
  const browser = await chromium.launch({ executablePath, headless: true, args: CHROMIUM_FLAGS });
  try {
    const page = await browser.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(`http://127.0.0.1:${server.address().port}/`);
    const info = await page.evaluate((b) => window.dk.setup(b), backend);
    const loadMs = await page.evaluate(() => window.dk.load());
    if (request.mode === 'parity') {
      const result = await page.evaluate(() => window.dk.parity());
      const arrays = {};
      let rows = 0;
      for (const [n, { shape, data }] of Object.entries(result)) {
        arrays[n] = { shape, data: Float32Array.from(data) };
        rows = shape[0];
      }
      const prefix = `${request.outputs}.chromium-${backend}`;
      writeTensors(prefix, arrays);
      return { rows, outputs: prefix + '.json', load_ms: loadMs, browser: browser.version(), cross_origin_isolated: info.isolated };
    }
    const rule = sampling(request);
    const first = await page.evaluate(([w, s]) => window.dk.warm(w, s), [Number(request.warmup), rule.maxSeconds]);
    // the deadline is Node's clock: each batch gets the seconds left until it
    const { timings, stopped } = await sample(rule, (k, deadline) => page.evaluate(([n, s]) => window.dk.timeCalls(n, s),
      [k, Math.max(0, (deadline - performance.now()) / 1000)]), () => performance.now());
    if (errors.length) throw new Error(errors[0]);
    return { timings_ms: timings, stopped, warmup: Number(request.warmup), load_ms: loadMs, first_inference_ms: first,
      peak_rss_mb: rendererPeakRssMb(process.pid), threads: 1, browser: browser.version(),
      cross_origin_isolated: info.isolated };
  } finally {
    await browser.close();
    server.close();
  }
}
