// Runs a TF.js bundle (graph or layers model) in Node with @tensorflow/tfjs, in its own process,
// and (backends named chromium-*) in headless Chromium through browser.mjs.
//
// Usage: node harness.mjs REQUEST.json; writes the JSON result to request.response.
// The npm dependencies are resolved from request.modules (a folder holding node_modules, the
// cache that deploykit fills with `npm ci`), so this file works from a checkout and from a wheel.
//
// Request: {bundle: ".../model.json", inputs: ".../inputs.json" (+ .bin), outputs: prefix,
//           mode: "parity" | "latency", backends: ["cpu", "wasm", "chromium-wasm"], threads, warmup, iterations,
//           max_seconds, min_iterations, p50_tolerance, p99_tolerance (sampling.mjs), modules, response}
// Tensors travel as raw little-endian data: a JSON index {name: {dtype, shape, offset, length}}
// and one .bin file (the Python side converts from and to .npz).
//
// Modes, per backend:
//   parity   every row, one sample at a time; outputs written to `${outputs}.${backend}.json/.bin`
//   latency  load time, first-inference time, warm-up, then timed single-sample calls until sampling.mjs says stop
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';

import { sample as timeUntilStopped, sampling } from './sampling.mjs';

const DTYPES = { float32: Float32Array, int32: Int32Array, uint8: Uint8Array, bool: Uint8Array };

// ---- bundle safety and loading ------------------------------------------------------------
export function weightPaths(manifest, bundleDir) {
  // Every shard path must be a plain relative path that stays inside the bundle folder.
  const root = path.resolve(bundleDir);
  const files = [];
  for (const group of manifest.weightsManifest || []) {
    for (const p of group.paths || []) {
      if (typeof p !== 'string' || p === '' || path.isAbsolute(p) || path.win32.isAbsolute(p) ||
          p.includes('\\') || p.includes('\0') || p.split('/').includes('..') || /^[a-z]+:/i.test(p)) {
        throw new Error(`unsafe weight path in model.json: ${JSON.stringify(p)} (must stay inside the bundle folder)`);
      }
      const full = path.resolve(root, p);
      if (!full.startsWith(root + path.sep)) {
        throw new Error(`unsafe weight path in model.json: ${JSON.stringify(p)} escapes the bundle folder`);
      }
      files.push(full);
    }
  }
  return files;
}

function readBundle(modelJson) {
  const manifest = JSON.parse(fs.readFileSync(modelJson, 'utf8'));
  const files = weightPaths(manifest, path.dirname(modelJson));
  const specs = (manifest.weightsManifest || []).flatMap((g) => g.weights);
  const buffers = files.map((f) => fs.readFileSync(f));
  const total = Buffer.concat(buffers);
  const weightData = total.buffer.slice(total.byteOffset, total.byteOffset + total.byteLength);
  return { manifest, artifacts: {
    modelTopology: manifest.modelTopology, format: manifest.format, generatedBy: manifest.generatedBy,
    convertedBy: manifest.convertedBy, signature: manifest.signature,
    userDefinedMetadata: manifest.userDefinedMetadata, modelInitializer: manifest.modelInitializer,
    trainingConfig: manifest.trainingConfig, weightSpecs: specs, weightData,
  } };
}

class Model {
  // One loaded bundle on one backend, called with {inputName: tensor}, returning {outputName: tensor}.
  static async load(tf, modelJson) {
    const { manifest, artifacts } = readBundle(modelJson);
    const handler = tf.io.fromMemory(artifacts);
    const m = new Model();
    m.tf = tf;
    m.layers = manifest.format === 'layers-model';
    m.model = m.layers ? await tf.loadLayersModel(handler) : await tf.loadGraphModel(handler);
    if (m.layers) {
      m.inputNames = m.model.inputNames;
      m.outputNames = m.model.outputNames;
    } else {
      const sig = manifest.signature || {};
      m.inputs = Object.entries(sig.inputs || {}).map(([k, v]) => [k, v.name]);
      m.outputs = Object.entries(sig.outputs || {}).map(([k, v]) => [k, v.name]);
      m.inputNames = m.inputs.map(([k]) => k);
      m.outputNames = m.outputs.map(([k]) => k);
    }
    return m;
  }

  // Graph models with control flow (the while loops of LSTM/GRU) only run with executeAsync; the
  // first call finds out, and every later call takes the same path.
  async call(feed) {
    if (this.layers) {
      let out = this.model.predict(this.inputNames.map((n) => feed[n]));
      if (!Array.isArray(out)) out = [out];
      return Object.fromEntries(this.outputNames.map((n, i) => [n, out[i]]));
    }
    const byNode = Object.fromEntries(this.inputs.map(([k, node]) => [node, feed[k]]));
    const names = this.outputs.map(([, node]) => node);
    let out;
    if (this.dynamic) {
      out = await this.model.executeAsync(byNode, names);
    } else {
      try {
        out = this.model.execute(byNode, names);
      } catch (err) {
        if (!/executeAsync/.test(String(err && err.message))) throw err;
        this.dynamic = true;
        out = await this.model.executeAsync(byNode, names);
      }
    }
    if (!Array.isArray(out)) out = [out];
    return Object.fromEntries(this.outputNames.map((n, i) => [n, out[i]]));
  }
}

// ---- raw tensor files ----------------------------------------------------------------------
function readTensors(indexPath) {
  const index = JSON.parse(fs.readFileSync(indexPath, 'utf8'));
  const bin = fs.readFileSync(indexPath.replace(/\.json$/, '.bin'));
  const out = {};
  for (const [name, t] of Object.entries(index)) {
    const Ctor = DTYPES[t.dtype];
    if (!Ctor) throw new Error(`input '${name}': dtype ${t.dtype} is not supported by TF.js`);
    const copy = bin.buffer.slice(bin.byteOffset + t.offset, bin.byteOffset + t.offset + t.length);
    out[name] = { dtype: t.dtype, shape: t.shape, data: new Ctor(copy) };
  }
  return out;
}

function sample(tf, tensors, names, i) {
  const feed = {};
  for (const n of names) {
    const t = tensors[n];
    if (!t) throw new Error(`input '${n}' missing from the parity data`);
    const rowShape = t.shape.slice(1);
    const size = rowShape.reduce((a, b) => a * b, 1);
    feed[n] = tf.tensor(t.data.subarray(i * size, (i + 1) * size), [1, ...rowShape], t.dtype);
  }
  return feed;
}

export function writeTensors(prefix, arrays) {
  const index = {};
  const chunks = [];
  let offset = 0;
  for (const [name, { shape, data }] of Object.entries(arrays)) {
    const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    index[name] = { dtype: 'float32', shape, offset, length: buf.length };
    chunks.push(buf);
    offset += buf.length;
  }
  fs.writeFileSync(`${prefix}.bin`, Buffer.concat(chunks));
  fs.writeFileSync(`${prefix}.json`, JSON.stringify(index));
}

// ---- backends ----------------------------------------------------------------------------
async function useBackend(tf, requireFrom, name, threads) {
  if (name === 'wasm') {
    const wasm = requireFrom('@tensorflow/tfjs-backend-wasm');
    const dist = path.dirname(requireFrom.resolve('@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm'));
    wasm.setWasmPaths(dist + path.sep);
    if (threads > 1 && wasm.setThreadsCount) wasm.setThreadsCount(threads);
  }
  if (!(await tf.setBackend(name))) throw new Error(`TF.js backend '${name}' failed to initialize`);
  await tf.ready();
}

function peakRssMb() {
  try {
    const line = fs.readFileSync('/proc/self/status', 'utf8').split('\n').find((l) => l.startsWith('VmHWM:'));
    if (line) return Number(line.split(/\s+/)[1]) / 1024;
  } catch { /* not Linux */ }
  return process.resourceUsage().maxRSS / 1024;
}

async function parity(tf, request, tensors) {
  const t0 = performance.now();
  const model = await Model.load(tf, request.bundle);
  const loadMs = performance.now() - t0;
  const rows = tensors[model.inputNames[0]].shape[0];
  const outs = {};
  for (let i = 0; i < rows; i++) {
    const feed = sample(tf, tensors, model.inputNames, i);
    const result = await model.call(feed);
    for (const n of model.outputNames) {
      const y = result[n];
      (outs[n] ||= { shape: null, parts: [] }).parts.push(y.dataSync().slice());
      outs[n].shape = y.shape;
    }
    tf.dispose([...Object.values(feed), ...Object.values(result)]);
  }
  const arrays = {};
  for (const [n, { shape, parts }] of Object.entries(outs)) {
    const data = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
    let at = 0;
    for (const p of parts) { data.set(p, at); at += p.length; }
    arrays[n] = { shape: [rows, ...shape.slice(1)], data };
  }
  const prefix = `${request.outputs}.${tf.getBackend()}`;
  writeTensors(prefix, arrays);
  return { rows, outputs: prefix + '.json', load_ms: loadMs };
}

async function latency(tf, request, tensors) {
  const rssBefore = peakRssMb();
  const t0 = performance.now();
  const model = await Model.load(tf, request.bundle);
  const loadMs = performance.now() - t0;
  const feed = sample(tf, tensors, model.inputNames, 0);
  const once = async () => {
    const out = await model.call(feed);
    for (const y of Object.values(out)) y.dataSync(); // wait for the values, as a caller would
    tf.dispose(Object.values(out));
  };
  let t = performance.now();
  await once();
  const firstMs = performance.now() - t;
  const rule = sampling(request);
  const warmDeadline = performance.now() + rule.maxSeconds * 1000;
  for (let i = 0; i < Number(request.warmup); i++) { // bounded by max_seconds too, for slow models
    await once();
    if (performance.now() > warmDeadline) break;
  }
  const { timings, stopped } = await timeUntilStopped(rule, async (k, deadline) => {
    const batch = [];
    for (let i = 0; i < k; i++) {
      t = performance.now();
      await once();
      const end = performance.now();
      batch.push(end - t);
      if (end > deadline) break;
    }
    return batch;
  }, () => performance.now());
  const peak = peakRssMb();
  return {
    timings_ms: timings, stopped, warmup: Number(request.warmup), load_ms: loadMs, first_inference_ms: firstMs,
    peak_rss_mb: peak, model_rss_mb: peak - rssBefore, threads: Number(request.threads || 1),
  };
}

async function main(requestPath) {
  const request = JSON.parse(fs.readFileSync(requestPath, 'utf8'));
  let result;
  try {
    const requireFrom = createRequire(path.join(request.modules, 'package.json'));
    const tf = requireFrom('@tensorflow/tfjs');
    tf.env().set('IS_NODE', true);
    const tensors = readTensors(request.inputs);
    const backends = {};
    for (const name of request.backends) {
      const t0 = performance.now();
      if (name.startsWith('chromium-')) { // the same bundle in headless Chromium
        const { runInBrowser } = await import('./browser.mjs');
        backends[name] = await runInBrowser(request, requireFrom, name.slice('chromium-'.length), { weightPaths, writeTensors });
      } else {
        await useBackend(tf, requireFrom, name, Number(request.threads || 1));
        const run = request.mode === 'parity' ? parity : latency;
        backends[name] = await run(tf, request, tensors);
      }
      backends[name].seconds = (performance.now() - t0) / 1000; // the manifest's timings, per backend
    }
    result = { ok: true, backends, runtime: 'tfjs', runtime_version: tf.version.tfjs, node_version: process.version };
  } catch (err) {
    result = { ok: false, error: String(err && err.message ? err.message : err).slice(0, 500) };
  }
  fs.writeFileSync(request.response, JSON.stringify(result));
}

// Exit when the deploykit process that started us is gone (e.g. SIGKILL): no orphaned runtimes.
// process.exit runs playwright's exit hooks, which kill a Chromium it launched.
function dieWithParent(parent) {
  if (!parent) return;
  const check = () => { if (process.ppid !== parent) process.exit(1); };
  check();
  setInterval(check, 200).unref();
}

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(new URL(import.meta.url).pathname)) {
  dieWithParent(Number(process.env.DEPLOYKIT_PARENT_PID || 0));
  await main(process.argv[2]);
}
