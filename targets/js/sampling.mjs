// When to stop timing: the twin of deploykit/validation/latency.py (Sampling, timed_calls), the
// same rule for the TF.js harness in Node and in the browser (tests/test_latency.py holds the two
// to the same decisions on the same timings).
//
// Timed calls go on until the 95% confidence interval of p50 is within +-p50_tolerance of it and
// that of p99 within +-p99_tolerance (distribution-free: order statistics at the ranks
// n*q -+ 1.96*sqrt(n*q*(1-q))), after at least min_iterations calls; iterations and max_seconds cap
// it. When p99 cannot get an interval before the time cap, p50 alone decides.
export const Z95 = 1.959963984540054;
export const CONVERGED = 'converged', TIME_CAP = 'time cap', ITERATION_CAP = 'iteration cap';

export function quantileInterval(ordered, q, z = Z95) {
  const n = ordered.length;
  const half = z * Math.sqrt(n * q * (1 - q));
  const lo = Math.floor(n * q - half), hi = Math.ceil(n * q + half); // 1-based ranks
  if (lo < 1 || hi > n) return null;
  return [ordered[lo - 1], ordered[hi - 1]];
}

function minCalls(q) {
  let n = 1;
  while (quantileInterval(new Array(n).fill(0), q) === null) n++;
  return n;
}
export const P99_MIN_CALLS = minCalls(0.99);

// numpy's default percentile (linear interpolation between the closest ranks)
export function percentile(ordered, q) {
  const at = (ordered.length - 1) * q, lo = Math.floor(at), hi = Math.ceil(at);
  return ordered[lo] + (ordered[hi] - ordered[lo]) * (at - lo);
}

function within(ordered, q, tolerance) {
  const ci = quantileInterval(ordered, q);
  return ci !== null && ci[1] - ci[0] <= 2 * tolerance * percentile(ordered, q);
}

// The rule's settings from a harness request (deploykit's LatencySettings.sampling()).
export function sampling(request) {
  const get = (k) => {
    const v = Number(request[k]);
    if (request[k] === undefined || request[k] === null || !Number.isFinite(v)) throw new Error(`latency request: ${k} missing`);
    return v;
  };
  return { iterations: get('iterations'), maxSeconds: get('max_seconds'), minIterations: get('min_iterations'),
    p50Tolerance: get('p50_tolerance'), p99Tolerance: get('p99_tolerance') };
}

// Why to stop after these sorted timings, elapsedS seconds into the timed calls; null: go on.
export function verdict(s, ordered, elapsedS) {
  const n = ordered.length;
  if (n >= s.iterations) return ITERATION_CAP;
  if (elapsedS >= s.maxSeconds) return TIME_CAP;
  if (n < s.minIterations) return null;
  if (!within(ordered, 0.5, s.p50Tolerance)) return null;
  if (within(ordered, 0.99, s.p99Tolerance)) return CONVERGED;
  const reachable = n >= P99_MIN_CALLS || (elapsedS / n) * P99_MIN_CALLS < s.maxSeconds;
  return reachable ? null : CONVERGED;
}

export function nextCheck(n) { return Math.max(n + 10, Math.ceil(n * 1.1)); }

// Timed calls of `timeBatch(k)` (resolves to k per-call milliseconds, e.g. k calls in a browser
// page) until the rule says stop: {timings, stopped}. With batches of 1 this is timed_calls' loop.
export async function sample(s, timeBatch, now) {
  const timings = [];
  const started = now();
  let check = 1;
  for (;;) {
    const want = Math.max(1, Math.min(check, s.iterations) - timings.length);
    const batch = await timeBatch(want, started + s.maxSeconds * 1000);
    timings.push(...batch);
    const elapsed = (now() - started) / 1000;
    if (timings.length >= check || timings.length >= s.iterations || elapsed >= s.maxSeconds) {
      const stopped = verdict(s, [...timings].sort((a, b) => a - b), elapsed);
      if (stopped) return { timings, stopped };
      check = nextCheck(timings.length);
    }
  }
}
