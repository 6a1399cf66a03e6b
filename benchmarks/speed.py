"""Issue #16's speed goals, G1 to G5, measured in one run and printed as one table.

    .venv/bin/python benchmarks/speed.py [--quick] [--models example,text,mobilenetv2,resnet50] [--profile]
    .venv/bin/python benchmarks/speed.py --profile --manifest OUT/manifest.json [--wall SECONDS]   # no build

Every deploykit build is the CLI in its own process, as users run it, into a temporary folder:
`deploykit build --target tflite,js,serving --quantize float32 --no-container` on the model's SavedModel
with 8 parity rows, validation included, default latency settings and js backends. Goals:

  G1  that build at most 0.6x the official CLIs converting the same two artifacts (`tflite_convert` and
      `tensorflowjs_converter` graph float32, one process each), on MobileNetV2 and ResNet50
  G2  every stage's time in the manifest (`timings`), and the time it accounts for out of the build's wall
  G3  the manifest's TFLite float32 p50 within 10% of a plain LiteRT loop on the same artifact and input,
      timed right after the build (bundled example, MobileNetV2); two builds in a row agree within their
      95% intervals (`latency.p50_ci_ms`, `latency.p99_ci_ms`)
  G4  in each build's manifest: the SavedModel source was not re-exported, every artifact is the
      preflight's conversion (no second conversion), TF.js parity ran on cpu, wasm and the browser while
      latency was timed on wasm and the browser only (not the cpu reference kernels), and (MobileNetV2,
      ResNet50) the parity runs overlapped; latency runs one at a time by construction (judge.judge)
  G5  seconds per million parameters roughly constant over the ladder (max/min <= 2) and the build's largest
      process's peak RSS at most 2 x parameters x 4 bytes + the runtime's own (the same build of a
      10-parameter model)

Models come from benchmarks/ladder.py (`make_model`: built in code, random seeded weights, nothing downloaded),
and the CLI side uses ladder.py's `official_clis`. Figures go to benchmarks/results/speed.json.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import ladder  # noqa: E402 - after the path insert, as a script
from benchmarks.ladder import fmt, md_table  # noqa: E402

LADDER = ("example", "text", "mobilenetv2", "resnet50")
QUICK = ("example", "mobilenetv2")
G1_MODELS = ("mobilenetv2", "resnet50")
G3_MODELS = ("example", "mobilenetv2")
PARITY_ROWS = 8
BUILD_ARGS = ["--target", "tflite,js,serving", "--quantize", "float32", "--no-container"]
G1_RATIO, G3_DEVIATION, G5_SPREAD, G5_RSS_FACTOR, G2_ACCOUNTED = 0.6, 0.10, 2.0, 2.0, 0.9
# the steps of the build that do what the two CLIs do (one TensorFlow import, load, the two float32 conversions,
# which the intake's preflights write): what the build cannot go below without faster converters
G1_SAME_WORK = ("intake.import_tensorflow", "intake.load", "intake.preflight_tflite", "intake.preflight_js")
STAGES = ("intake", "convert", "validate")
ONE_AT_A_TIME = ("validate.latency",)  # README, Latency: one artifact at a time, so measurements do not compete  # the manifest's top-level stages, in order
LOOP = {"warmup": 50, "iterations": 2000, "max_seconds": 10.0}  # the independent LiteRT loop


def log(message: str) -> None:
    print(f"[speed {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---- one process tree, timed and measured -------------------------------------------------------
def role(cmdline: list[str]) -> str:
    """What a process of a deploykit build is, from its command line."""
    text = " ".join(cmdline)
    for needle, name in (("deploykit.worker intake", "intake worker"), ("deploykit.worker convert", "convert worker"),
                         ("tflite/harness.py", "tflite harness"), ("harness.mjs", "node (js harness)"),
                         ("chromium", "chromium (js harness)"), ("deploykit.worker call", "in-process worker"),
                         ("deploykit build", "deploykit CLI"), ("deploykit.worker", "worker")):
        if needle in text:
            if name == "in-process worker":  # its job's scratch folder, e.g. serving-float32-parity.in_process_job
                return f"worker {Path(cmdline[-1]).parent.name}" if len(cmdline) > 1 else name
            return name
    return Path(cmdline[0]).name if cmdline else "?"


def peak_mb(pid: int) -> float | None:
    """A process's own peak resident memory so far (VmHWM), from /proc."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            return next((int(line.split()[1]) / 1024 for line in fh if line.startswith("VmHWM:")), None)
    except OSError:
        return None


def run_measured(cmd: list[str], env: dict, timeout: float = 3600) -> dict:
    """Run `cmd`; wall seconds, exit status, stderr, and the peak RSS of its largest process.

    Two measures, the larger wins: os.wait4's ru_maxrss of the child, which Linux takes over the child
    and every descendant it reaped (exact, but blind to sandboxed workers: bubblewrap's PID namespace
    does not hand their usage up), and each process's own high-water mark (VmHWM) read from /proc by a
    5 Hz sampler of the process tree, which also names the process (misses only the last 0.2 s of one)."""
    import psutil

    with tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                text=True)
        done, peaks = threading.Event(), {}  # pid -> (peak MB, role)

        def sample():
            try:
                root = psutil.Process(proc.pid)
                while not done.is_set():
                    for p in [root, *root.children(recursive=True)]:
                        mb = peak_mb(p.pid)
                        if mb is not None and mb > peaks.get(p.pid, (0.0, ""))[0]:
                            try:
                                peaks[p.pid] = (mb, peaks[p.pid][1] if p.pid in peaks else role(p.cmdline()))
                            except psutil.Error:
                                pass
                    done.wait(0.2)
            except psutil.Error:
                pass

        watcher = threading.Thread(target=sample, daemon=True)
        watcher.start()
        killer = threading.Timer(timeout, proc.kill)
        killer.start()
        _, status, usage = os.wait4(proc.pid, 0)  # not proc.wait(): wait4 returns the tree's rusage
        wall = time.perf_counter() - started
        killer.cancel()
        done.set()
        watcher.join(2)
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read()
    top = sorted(peaks.values(), reverse=True)[:4]
    reaped = usage.ru_maxrss / 1024
    largest = {"mb": round(top[0][0], 1), "role": top[0][1]} if top else {"mb": 0.0, "role": None}
    if reaped > largest["mb"]:  # a process grew after its last sample: wait4 has its peak, the sampler its name
        largest = {"mb": round(reaped, 1), "role": f"{largest['role']}? (peak from wait4, {largest['mb']:.0f} MB sampled)"}
    return {"wall_seconds": round(wall, 2), "returncode": proc.returncode, "peak_rss_mb": largest["mb"],
            "largest": largest, "wait4_maxrss_mb": round(reaped, 1),
            "sampled_peaks": [{"mb": round(mb, 1), "role": r} for mb, r in top],
            "stderr_tail": "\n".join(stderr.strip().splitlines()[-8:])}


def deploykit_env() -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("DEPLOYKIT_JS_BACKENDS", None)  # default backends, as users run it
    return env


def deploykit_build(model: dict, out: Path, label: str) -> dict:
    """`deploykit build` (the G1 command) as a subprocess; wall, peak RSS, the manifest's timings and figures."""
    cmd = [sys.executable, "-m", "deploykit", "build", "--model", str(model["saved_model"]), "--data", str(model["data8"]),
           *BUILD_ARGS, "--out", str(out), "--quiet"]
    log(f"{model['name']}: deploykit build ({label})")
    run = run_measured(cmd, deploykit_env())
    manifest_path = next((p for p in (out / "manifest.json", Path(f"{out}.failed") / "manifest.json") if p.exists()), None)
    manifest = json.loads(manifest_path.read_text()) if manifest_path else None
    result = {**run, "label": label, "command": " ".join(["deploykit", *cmd[4:]]),
              "error": None if run["returncode"] == 0 else f"exit {run['returncode']}: {run['stderr_tail'][-300:]}"}
    if manifest:
        result.update(timings=manifest.get("timings", {}), memory=manifest.get("memory", {}), artifacts=artifact_facts(manifest),
                      g4=g4_facts(manifest),
                      stages=stages(manifest.get("timings", {}), run["wall_seconds"]), passed=manifest.get("passed"),
                      output=str(manifest_path.parent))
    log(f"{model['name']}: deploykit build ({label}): {run['wall_seconds']:.1f} s, peak RSS {run['peak_rss_mb']:.0f} MB"
        + (f" ({result['error']})" if result["error"] else ""))
    return result


def artifact_facts(manifest: dict) -> list[dict]:
    rows = []
    for a in manifest.get("artifacts", []):
        lat = a.get("latency") or {}
        rows.append({"target": a["target"], "variant": a["variant"], "path": a.get("path"), "passed": a.get("passed"),
                     **{k: lat.get(k) for k in ("p50_ms", "p99_ms", "p50_ci_ms", "p99_ci_ms", "iterations", "stopped", "runtime")}})
    return rows


def g4_facts(manifest: dict) -> dict:
    """What G4 checks in a build's manifest (see g4)."""
    artifacts = manifest.get("artifacts", [])
    js = [a for a in artifacts if a["target"] == "js"]
    return {
        "timing_keys": sorted(manifest.get("timings", {})),
        "converted_in": {f"{a['target']}/{a['variant']}": (a.get("details") or {}).get("converted_in") for a in artifacts},
        "js_parity_backends": sorted({b for a in js for b in ((a.get("parity") or {}).get("backends") or {})}),
        "js_latency_backends": sorted({b for a in js for b in ((a.get("latency") or {}).get("backends") or {})}),
    }


# ---- G2: where a build's time goes --------------------------------------------------------------
def stage_seconds(timings: dict, name: str) -> float | None:
    """A top-level stage's seconds: `NAME` or (older manifests) `NAME_seconds`."""
    value = timings.get(name, timings.get(f"{name}_seconds"))
    return float(value) if isinstance(value, (int, float)) else None


def children(timings: dict, stage: str) -> tuple[dict, dict]:
    """(leaves, sub-rows) under `stage.`: a `KEY[backend]` whose `KEY` is also timed is a sub-row of
    it (not counted twice); otherwise it is a leaf."""
    keys = {k: float(v) for k, v in timings.items() if k.startswith(stage + ".") and isinstance(v, (int, float))}
    leaves, subs = {}, {}
    for k, v in keys.items():
        base = k.split("[", 1)[0]
        (subs if base != k and base in keys else leaves)[k] = v
    return leaves, subs


def side_by_side(leaves: dict, seconds: float) -> dict:
    """The steps of a stage that ran side by side, when their sum exceeds the stage's wall: the
    sub-group (`validate.parity.*`, ...) whose removal leaves a sum that fits, the largest such, never
    one that deploykit runs one step at a time (latency); else every step."""
    groups: dict[str, dict] = {}
    for k, v in leaves.items():
        groups.setdefault(".".join(k.split(".")[:2]), {})[k] = v
    fits = [g for name, g in groups.items() if name not in ONE_AT_A_TIME and sum(leaves.values()) - sum(g.values()) <= seconds]
    return max(fits, key=lambda g: sum(g.values())) if fits and len(groups) > 1 else leaves


def stages(timings: dict, wall: float) -> list[dict]:
    """The build's time as rows {group, stage, seconds, share of wall, counted}: every timed step, plus
    the remainders no key accounts for (which a regression can hide in). Counted rows add up to the wall."""
    rows = []
    total = stage_seconds(timings, "total")
    rows.append({"group": "outside", "stage": "process start, imports, manifest and report (wall - timings.total)",
                 "seconds": max(0.0, wall - total) if total is not None else wall, "counted": True, "timed": False})
    inside = 0.0
    for stage in STAGES:
        seconds = stage_seconds(timings, stage)
        leaves, subs = children(timings, stage)
        if seconds is None and not leaves:
            continue
        if seconds is None:
            seconds = sum(leaves.values())
        inside += seconds
        for k, v in leaves.items():
            rows.append({"group": stage, "stage": k, "seconds": v, "counted": True, "timed": True})
            rows += [{"group": stage, "stage": "  " + s, "seconds": sv, "counted": False, "timed": True}
                     for s, sv in subs.items() if s.split("[", 1)[0] == k]
        rest = seconds - sum(leaves.values())
        if leaves and rest < -0.005:  # steps that ran side by side (--jobs): their sum exceeds the stage
            parallel = side_by_side(leaves, seconds)
            for r in rows:
                if r["group"] == stage and r["stage"].strip().split("[", 1)[0] in parallel:
                    r["counted"] = False
            prefix = os.path.commonprefix(list(parallel)).rstrip("./") if len(parallel) > 1 else stage
            rows.append({"group": stage, "stage": f"{prefix} (wall: {seconds - (sum(leaves.values()) - sum(parallel.values())):.1f} s "
                         f"for {len(parallel)} steps run side by side, {sum(parallel.values()):.1f} s summed)",
                         "seconds": seconds - (sum(leaves.values()) - sum(parallel.values())), "counted": True, "timed": True})
        else:
            rows.append({"group": stage, "stage": f"{stage} (rest: not in any {stage}.* key)" if leaves else stage,
                         "seconds": max(0.0, rest) if leaves else seconds, "counted": True, "timed": True})  # inside a timed stage
    if total is not None:
        rows.append({"group": "inside", "stage": "set-up and after validation (timings.total - stages)",
                     "seconds": max(0.0, total - inside), "counted": True, "timed": False})
    for r in rows:
        r["seconds"] = round(r["seconds"], 3)
        r["share"] = round(r["seconds"] / wall, 4) if wall else None
    order = {g: i for i, g in enumerate(["outside", *STAGES, "inside"])}
    return sorted(rows, key=lambda r: (order.get(r["group"], 99), not r["stage"].startswith(r["group"] + "."),
                                       r["stage"].startswith("  ")))


def profile_table(rows: list[dict], wall: float) -> str:
    """Grouped by stage (groups in build order), each group's steps largest first; `share` is of the wall."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["group"], []).append(r)
    body = []
    for group, members in groups.items():
        counted = sum(m["seconds"] for m in members if m["counted"])
        if len(members) == 1:  # a stage timed as one figure
            body.append([f"**{members[0]['stage']}**", fmt(counted, ".2f"), fmt(members[0]["share"], ".1%"), ""])
            continue
        body.append([f"**{group}**", fmt(counted, ".2f"), fmt(counted / wall if wall else None, ".1%"), ""])
        tops = [m for m in members if not m["stage"].startswith("  ")]
        for m in sorted(tops, key=lambda m: -m["seconds"]):
            body.append([m["stage"], fmt(m["seconds"], ".2f"), fmt(m["share"], ".1%"), "" if m["counted"] else "not summed"])
            for s in sorted((s for s in members if s["stage"].startswith("  ") and s["stage"].strip().split("[")[0] == m["stage"]),
                            key=lambda s: -s["seconds"]):
                body.append([s["stage"], fmt(s["seconds"], ".2f"), fmt(s["share"], ".1%"), "within the row above"])
    body.append(["**wall**", fmt(wall, ".2f"), "100%", ""])
    return md_table(["stage", "seconds", "share of wall", ""], body)


def top_stage(rows: list[dict]) -> dict | None:
    """The largest counted row: what holds the build back."""
    counted = [r for r in rows if r["counted"]]
    return max(counted, key=lambda r: r["seconds"]) if counted else None


def expected_keys(build: dict) -> list[str]:
    """Keys G2 asks for: the three stages, intake's steps, parity and latency per artifact."""
    keys = [*STAGES, "intake.STEP"]
    for a in build.get("artifacts", []):
        keys.append(f"validate.parity.{a['target']}/{a['variant']}")
        if a.get("p50_ms") is not None:
            keys.append(f"validate.latency.{a['target']}/{a['variant']}")
    return keys


def missing_keys(build: dict) -> list[str]:
    timings = build.get("timings") or {}
    missing = []
    for key in expected_keys(build):
        if key in STAGES:
            ok = stage_seconds(timings, key) is not None
        elif key == "intake.STEP":
            ok = any(k.startswith("intake.") for k in timings)
        else:
            ok = any(k == key or k.startswith(key + "[") for k in timings)
        if not ok:
            missing.append(key)
    return missing


def accounted(build: dict) -> float | None:
    """Share of the build's wall time inside timed stages (not the remainders)."""
    rows, wall = build.get("stages"), build.get("wall_seconds")
    if not rows or not wall:
        return None
    return sum(r["seconds"] for r in rows if r["counted"] and r["timed"]) / wall


# ---- G3: an independent LiteRT loop -------------------------------------------------------------
LITERT_LOOP = r"""
import json, sys, time
import numpy as np
from ai_edge_litert.interpreter import Interpreter

model, inputs, warmup, iterations, max_seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
it = Interpreter(model_path=model, num_threads=1)
signature = it.get_signature_runner()  # only to map the input names of the .npz to tensor indices
data = np.load(inputs)
feed = []
for name, d in signature.get_input_details().items():
    x = data[name][0:1].astype(d["dtype"])
    feed.append((d["index"], x))
del signature  # it holds views of the interpreter's buffers, which allocate_tensors refuses
for index, x in feed:
    it.resize_tensor_input(index, x.shape)
it.allocate_tensors()
outputs = [d["index"] for d in it.get_output_details()]

def call():
    for index, x in feed:
        it.set_tensor(index, x)
    it.invoke()
    return [it.get_tensor(i) for i in outputs]

for _ in range(warmup):
    call()
clock, calls, invokes = time.perf_counter, [], []
deadline = clock() + max_seconds
for _ in range(iterations):
    t0 = clock()
    for index, x in feed:
        it.set_tensor(index, x)
    t1 = clock()
    it.invoke()
    t2 = clock()
    [it.get_tensor(i) for i in outputs]
    t3 = clock()
    calls.append((t3 - t0) * 1000)
    invokes.append((t2 - t1) * 1000)
    if t3 > deadline:
        break
print(json.dumps({"n": len(calls), "p50_ms": float(np.percentile(calls, 50)), "p99_ms": float(np.percentile(calls, 99)),
                  "invoke_p50_ms": float(np.percentile(invokes, 50))}))
"""


def litert_loop(build: dict) -> dict | None:
    """Time the build's TFLite float32 artifact with a plain Interpreter loop (1 thread, set_tensor +
    invoke + get_tensor per single-sample call) on the first row of the build's own parity inputs."""
    tflite = next((a for a in build.get("artifacts", []) if a["target"] == "tflite" and a["variant"] == "float32"), None)
    if not tflite or not build.get("output"):
        return None
    out = Path(build["output"])
    cmd = [sys.executable, "-c", LITERT_LOOP, str(out / tflite["path"]), str(out / "validation" / "inputs.npz"),
           str(LOOP["warmup"]), str(LOOP["iterations"]), str(LOOP["max_seconds"])]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=deploykit_env())
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1][:200] if proc.stderr.strip() else f"exit {proc.returncode}"}
    loop = json.loads(proc.stdout.strip().splitlines()[-1])
    loop["load_average"] = round(os.getloadavg()[0], 2)  # a shared machine: how busy it was during the loop
    loop["deploykit_p50_ms"] = tflite["p50_ms"]
    loop["deviation"] = (tflite["p50_ms"] / loop["p50_ms"] - 1) if tflite["p50_ms"] else None
    return loop


def separation(a, b) -> float | None:
    """Distance between two intervals' midpoints over the sum of their half-widths: at most 1 when they
    overlap (the ratio to G3's goal); None when either is missing."""
    if not (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b) == 2):
        return None
    gap, reach = abs((a[0] + a[1]) - (b[0] + b[1])) / 2, ((a[1] - a[0]) + (b[1] - b[0])) / 2
    return gap / reach if reach > 0 else (0.0 if gap == 0 else float("inf"))


# ---- models -------------------------------------------------------------------------------------
def tiny_model(folder: Path) -> dict:
    """Dense(4 -> 2), 10 parameters: the same build of it is the runtime's own memory and fixed time."""
    import numpy as np

    from deploykit.tfenv import tf_keras

    keras = tf_keras()
    keras.utils.set_random_seed(0)
    x = keras.Input((4,), name="x")
    model = keras.Model(x, keras.layers.Dense(2, name="y")(x))
    model.save(str(folder / "saved_model"), save_format="tf")
    np.savez(folder / "inputs.npz", x=np.random.default_rng(0).normal(size=(PARITY_ROWS, 4)).astype(np.float32))
    return {"name": "tiny", "params": int(model.count_params()), "saved_model": folder / "saved_model",
            "data": folder / "inputs.npz", "rows": PARITY_ROWS, "note": "Dense(4 -> 2): the runtime's own cost"}


def with_parity_rows(model: dict) -> dict:
    """The model's inputs cut to PARITY_ROWS rows (the G1 build's parity data)."""
    import numpy as np

    data = np.load(model["data"])
    path = Path(model["data"]).with_name("inputs8.npz")
    np.savez(path, **{k: v[:PARITY_ROWS] for k, v in data.items()})
    return {**model, "data8": path}


def bench_model(name: str, args, work: Path) -> dict:
    folder = work / name
    folder.mkdir()
    log(f"{name}: building the model in code and saving it")
    model = with_parity_rows(tiny_model(folder) if name == "tiny" else ladder.make_model(name, folder))
    result = {k: model[k] for k in ("name", "params", "note")}
    result["memory_mb"] = round(model["params"] * 4 / 2**20, 2)
    if name in G1_MODELS and not args.no_cli:
        runs = ladder.official_clis(model, folder / "cli", ["float32"])
        result["cli"] = {"seconds": round(sum(r["seconds"] for r in runs), 2), "runs": runs,
                         "failed": [r["artifact"] for r in runs if not r["ok"]]}
    result["builds"] = []
    for label in ("A", "B") if name in G3_MODELS else ("A",):
        build = deploykit_build(model, folder / f"out-{label}", label)
        if name in G3_MODELS:
            log(f"{name}: plain LiteRT loop on build {label}'s tflite/float32")
            build["litert_loop"] = litert_loop(build)
        if args.profile and build.get("stages"):
            print(f"\n### {name}, build {label}: where the time goes ({build['wall_seconds']:.1f} s wall)\n\n"
                  + profile_table(build["stages"], build["wall_seconds"]) + "\n", flush=True)
        result["builds"].append(build)
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
    return result


# ---- the goals ----------------------------------------------------------------------------------
def goal_row(goal: str, what: str, measured: str, target: str, ratio: float | None, held: str = "",
             status: str | None = None) -> dict:
    """`ratio` is measured against the goal so that <= 1 passes, whatever the goal's direction."""
    if status is None:
        status = "-" if ratio is None else "PASS" if ratio <= 1 else "MISS"
    return {"goal": goal, "what": what, "measured": measured, "target": target,
            "ratio": None if ratio is None else round(ratio, 3), "status": status,
            "held_back_by": held[:600] if status in ("MISS", "ERROR") else ""}


def held_by(build: dict, n: int = 3) -> str:
    """The build's largest counted stages, largest first."""
    counted = sorted((r for r in build.get("stages") or [] if r["counted"]), key=lambda r: -r["seconds"])[:n]
    return ", ".join(f"{r['stage']} {r['seconds']:.1f} s ({r['share']:.0%})" for r in counted) or "no timings"


def g1(models: list[dict]) -> list[dict]:
    rows = []
    for m in models:
        if m["name"] not in G1_MODELS or "cli" not in m:
            continue
        build, cli = m["builds"][0], m["cli"]
        if build["error"] or cli["failed"]:
            rows.append(goal_row("G1", f"{m['name']}: deploykit / CLIs", "error", f"<= {G1_RATIO}", None,
                                 build["error"] or "CLI failed: " + ", ".join(cli["failed"]), status="ERROR"))
            continue
        ratio = build["wall_seconds"] / cli["seconds"]
        over = build["wall_seconds"] - G1_RATIO * cli["seconds"]
        timings = build.get("timings") or {}
        same = [k for k in G1_SAME_WORK if isinstance(timings.get(k), (int, float))]
        floor = sum(timings[k] for k in same)
        conversions = [timings[k] for k in same if "preflight" in k]
        parallel = floor - sum(conversions) + max(conversions, default=0.0)  # the two conversions side by side
        floor_text = (f"; the CLIs' own work inside it ({', '.join(k.removeprefix('intake.') for k in same)}) takes "
                      f"{floor:.1f} s = {floor / cli['seconds']:.2f}x the CLIs one after another, "
                      f"{parallel:.1f} s = {parallel / cli['seconds']:.2f}x with the conversions side by side") if same else ""
        rows.append(goal_row("G1", f"{m['name']}: deploykit / CLIs",
                             f"{build['wall_seconds']:.1f} s / {cli['seconds']:.1f} s = {ratio:.2f}", f"<= {G1_RATIO}",
                             ratio / G1_RATIO, f"{held_by(build)}; {over:.0f} s over the goal{floor_text}"))
    return rows


def g2(models: list[dict]) -> list[dict]:
    builds = [(m["name"], b) for m in models for b in m["builds"] if b.get("timings") is not None]
    if not builds:
        return [goal_row("G2", "stage timings", "no manifest", "all", None, status="ERROR")]
    expected = sum(len(expected_keys(b)) for _, b in builds)
    missing = sorted({k for _, b in builds for k in missing_keys(b)})
    absent = sum(len(missing_keys(b)) for _, b in builds)
    present = expected - absent
    shares = [(accounted(b), name, b) for name, b in builds if accounted(b) is not None]
    worst = min(shares, key=lambda s: s[0]) if shares else None
    rows = [goal_row("G2", "stage keys in manifest timings", f"{present}/{expected}", "all",
                     expected / present if present else float("inf"), "missing: " + ", ".join(missing))]
    if worst:
        share, name, b = worst
        untimed = max((r for r in b["stages"] if r["counted"] and not r["timed"]), key=lambda r: r["seconds"], default=None)
        rows.append(goal_row("G2", "wall inside timed stages (worst build)", f"{share:.0%} ({name} {b['label']})",
                             f">= {G2_ACCOUNTED:.0%}", G2_ACCOUNTED / share if share else float("inf"),
                             f"{untimed['stage']}: {untimed['seconds']:.1f} s" if untimed else ""))
    return rows


def g3(models: list[dict]) -> list[dict]:
    rows = []
    for m in models:
        if m["name"] not in G3_MODELS:
            continue
        loops = [b.get("litert_loop") for b in m["builds"]]
        good = [lp for lp in loops if lp and lp.get("deviation") is not None]
        if not good:
            rows.append(goal_row("G3", f"{m['name']}: tflite p50 vs plain LiteRT", "error", f"<= {G3_DEVIATION:.0%}",
                                 None, str([lp.get("error") if lp else "no artifact" for lp in loops]), status="ERROR"))
        else:
            worst = max(good, key=lambda lp: abs(lp["deviation"]))
            text = "; ".join(f"{lp['deploykit_p50_ms']:.4g} vs {lp['p50_ms']:.4g} ms ({lp['deviation']:+.1%}, load "
                             f"{fmt(lp.get('load_average'), '.1f')})" for lp in good)
            rows.append(goal_row("G3", f"{m['name']}: tflite p50 vs plain LiteRT", text, f"<= {G3_DEVIATION:.0%}",
                                 abs(worst["deviation"]) / G3_DEVIATION,
                                 "validate.latency.tflite/float32 vs a plain set_tensor/invoke/get_tensor loop (the "
                                 f"harness times the same calls): invoke alone {worst['invoke_p50_ms']:.4g} ms"))
        if len(m["builds"]) >= 2:
            a, b = (next((x for x in bb.get("artifacts", []) if x["target"] == "tflite" and x["variant"] == "float32"), {})
                    for bb in m["builds"][:2])
            checks = {q: separation(a.get(f"{q}_ci_ms"), b.get(f"{q}_ci_ms")) for q in ("p50", "p99")}
            p50s = f"p50 {fmt(a.get('p50_ms'), '.4g')} / {fmt(b.get('p50_ms'), '.4g')} ms"
            if any(v is None for v in checks.values()):
                rows.append(goal_row("G3", f"{m['name']}: two builds' intervals overlap",
                                     f"- (no p50_ci_ms/p99_ci_ms in the manifest); {p50s}", "p50 and p99", None))
            else:
                ci = lambda x, q: "[" + ", ".join(f"{v:.4g}" for v in x[f"{q}_ci_ms"]) + "]"  # noqa: E731
                apart = [q for q, v in checks.items() if v > 1]
                rows.append(goal_row("G3", f"{m['name']}: two builds' intervals overlap",
                                     f"p50 {ci(a, 'p50')} vs {ci(b, 'p50')}, p99 {ci(a, 'p99')} vs {ci(b, 'p99')}",
                                     "p50 and p99", max(checks.values()),
                                     f"validate.latency.tflite/float32: {' and '.join(apart)} intervals disjoint "
                                     f"(p50 {a['p50_ms']:.4g} vs {b['p50_ms']:.4g} ms, {b['p50_ms'] / a['p50_ms'] - 1:+.1%}): each "
                                     "interval is one run's sampling error, not the build-to-build spread"))
    return rows


def g4_checks(name: str, build: dict) -> dict[str, bool]:
    """G4's checks on one build (check -> passed), against the js target's default backends."""
    from deploykit.targets.js.settings import JSSettings
    from deploykit.targets.js.target import latency_backends

    parity_backends = list(JSSettings().backends)
    facts, timings = build.get("g4") or {}, build.get("timings") or {}
    keys = facts.get("timing_keys", [])
    checks = {
        "SavedModel source not re-exported": "intake.reuse_saved_model" in keys and "intake.export_saved_model" not in keys,
        "no second conversion (every artifact converted in the intake's preflight)":
            bool(facts.get("converted_in")) and all(v == "intake worker" for v in facts["converted_in"].values()),
        "TF.js parity on cpu, wasm and the browser": facts.get("js_parity_backends") == sorted(parity_backends),
        "TF.js latency on wasm and the browser, not cpu":
            facts.get("js_latency_backends") == sorted(latency_backends(parity_backends)),
    }
    if name in G1_MODELS:  # long enough parity runs for the overlap to show in their sum
        leaves, _ = children(timings, "validate")  # per artifact, not per backend
        parity = [v for k, v in leaves.items() if k.startswith("validate.parity.")]
        latency = [v for k, v in leaves.items() if k.startswith("validate.latency.")]
        window = (stage_seconds(timings, "validate") or 0.0) - sum(latency)  # latency runs after parity, one at a time
        checks["parity runs side by side (their sum exceeds their wall)"] = len(parity) > 1 and sum(parity) > window
    return checks


def g4(models: list[dict]) -> list[dict]:
    results = [(m["name"], b, g4_checks(m["name"], b)) for m in models for b in m["builds"] if b.get("g4")]
    if not results:
        return [goal_row("G4", "runtimes do only what they are for", "no manifest", "all", None, status="ERROR")]
    total = sum(len(c) for _, _, c in results)
    passed = sum(sum(c.values()) for _, _, c in results)
    failed = [f"{name} {b['label']}: {check}" for name, b, c in results for check, ok in c.items() if not ok]
    return [goal_row("G4", "runtimes do only what they are for (checks on every build's manifest)",
                     f"{passed}/{total}", "all", total / passed if passed else float("inf"), "failed: " + "; ".join(failed))]


def g5(models: list[dict], baseline: dict | None) -> list[dict]:
    built = [m for m in models if m["builds"] and not m["builds"][0]["error"]]
    rows = []
    per = {m["name"]: m["builds"][0]["wall_seconds"] / (m["params"] / 1e6) for m in built}
    fit = ladder.growth([{"params": m["params"], "targets": {"build": {"build_seconds": m["builds"][0]["wall_seconds"],
                                                                       "error": None}}} for m in built]).get("build")
    if len(per) >= 2:
        spread = max(per.values()) / min(per.values())
        fixed = baseline["builds"][0]["wall_seconds"] if baseline and baseline["builds"] else None
        small = min(built, key=lambda m: m["params"])
        held = (f"fixed cost: the 10-parameter build takes {fmt(fixed, '.1f')} s of {small['name']}'s "
                f"{small['builds'][0]['wall_seconds']:.1f} s (largest stage there: {held_by(small['builds'][0])})")
        fit_text = f"; fit {fit['seconds_per_million_params']} s/M + {fit['fixed_seconds']} s" if fit else ""
        rows.append(goal_row("G5", "s per M params, max/min over the ladder",
                             ", ".join(f"{k} {v:.3g}" for k, v in per.items()) + f" -> {spread:.1f}x{fit_text}",
                             f"<= {G5_SPREAD:g}x", spread / G5_SPREAD, held))
    base = baseline["builds"][0]["peak_rss_mb"] if baseline and baseline["builds"] else None
    for m in models:
        b = m["builds"][0] if m["builds"] else None
        if not b or base is None:
            continue
        limit = G5_RSS_FACTOR * m["memory_mb"] + base
        rows.append(goal_row("G5", f"{m['name']}: peak RSS of the largest process",
                             f"{b['peak_rss_mb']:.0f} MB (limit 2 x {m['memory_mb']:.1f} + {base:.0f})",
                             f"<= {limit:.0f} MB", b["peak_rss_mb"] / limit,
                             f"{b['largest']['role']}; next: " + ", ".join(f"{x['role']} {x['mb']:.0f} MB" for x in b.get("sampled_peaks", [])[1:3])
                             + memory_growth(b.get("memory") or {})))
    return rows


def memory_growth(memory: dict, top: int = 4) -> str:
    """"; the intake worker's peak grew most in: reference +225 MB, ..." from the manifest's `memory`
    (the intake worker's peak after each step, in step order); "" for manifests without it."""
    steps, last, grew = list(memory.items()), 0.0, []
    for step, mb in steps:
        grew.append((mb - last, step.removeprefix("intake.")))
        last = max(last, mb)
    grew = [(mb, step) for mb, step in sorted(grew, reverse=True)[:top] if mb > 0]
    return ("; the intake worker's peak grew most in: " + ", ".join(f"{step} +{mb:.0f} MB" for mb, step in grew)) if grew else ""


def summary(doc: dict) -> list[dict]:
    models, baseline = doc["models"], doc.get("baseline")
    return [*g1(models), *g2(models), *g3(models),
            *g4(models), *g5(models, baseline)]


def summary_table(rows: list[dict]) -> str:
    return md_table(["goal", "what", "measured", "goal value", "ratio to goal", "result", "held back by"],
                    [[r["goal"], r["what"], r["measured"], r["target"], fmt(r["ratio"], ".2f"), r["status"],
                      r["held_back_by"]] for r in rows])


def models_table(doc: dict) -> str:
    body = []
    base = doc.get("baseline")
    fixed = base["builds"][0]["wall_seconds"] if base and base["builds"] else None
    for m in ([base] if base else []) + doc["models"]:
        for b in m["builds"]:
            tfl = next((a for a in b.get("artifacts", []) if a["target"] == "tflite"), {})
            loop = b.get("litert_loop") or {}
            body.append([m["name"], fmt(m["params"], ","), b["label"], fmt(b["wall_seconds"], ".1f"),
                         fmt(b["wall_seconds"] / (m["params"] / 1e6), ".3g"),
                         fmt((b["wall_seconds"] - fixed) / (m["params"] / 1e6) if fixed is not None and m is not base else None, ".3g"),
                         fmt(m.get("cli", {}).get("seconds"), ".1f"), fmt(b["peak_rss_mb"], ".0f"),
                         str(b["largest"]["role"]), fmt(tfl.get("p50_ms"), ".4g"), fmt(loop.get("p50_ms"), ".4g"),
                         "ok" if not b["error"] else b["error"][:60]])
    return md_table(["model", "params", "build", "wall s", "s / M params", "net of the 10-param build", "CLIs s", "peak RSS MB", "largest process",
                     "tflite p50 ms", "plain LiteRT p50 ms", "result"], body)


def render(doc: dict) -> str:
    m = doc["machine"]
    return "\n".join([
        f"# deploykit speed goals (issue #16), {doc['created_at']}", "",
        f"{m['cpus']} cores, load average {m['load_average_start']:.2f} at start, {m.get('load_average_end', 0):.2f} at end; "
        f"commit {doc.get('commit')}; wall {doc.get('wall_seconds', 0):.0f} s. Command: `{doc['command']}`", "",
        summary_table(doc["summary"]), "",
        "ratio to goal: measured / goal for an upper bound, goal / measured for a lower bound (<= 1 passes).", "",
        models_table(doc), ""])


# ---- main ---------------------------------------------------------------------------------------
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(LADDER), help="comma-separated, from: " + ", ".join(LADDER))
    p.add_argument("--quick", action="store_true", help="only " + " and ".join(QUICK))
    p.add_argument("--profile", action="store_true", help="print every build's stage table (where its time goes)")
    p.add_argument("--manifest", nargs="+", metavar="MANIFEST_JSON",
                   help="no building: print the stage table of these builds' manifests (with --wall, against that wall)")
    p.add_argument("--wall", type=float, help="with --manifest: the build's wall seconds (default: timings.total)")
    p.add_argument("--from-json", metavar="SPEED_JSON",
                   help="no building: judge a recorded run's figures again (e.g. after changing a goal) and print the tables")
    p.add_argument("--no-cli", action="store_true", help="skip the official CLIs (no G1)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="where speed.json goes")
    args = p.parse_args(argv)
    args.models = list(QUICK) if args.quick else [x.strip() for x in args.models.split(",") if x.strip()]
    unknown = [x for x in args.models if x not in ladder.MODELS]
    if unknown:
        p.error(f"--models: unknown {', '.join(unknown)} (known: {', '.join(LADDER)})")
    args.out = Path(args.out)
    return args


def show_manifests(args) -> int:
    for path in args.manifest:
        timings = json.loads(Path(path).read_text()).get("timings", {})
        wall = args.wall or stage_seconds(timings, "total") or 0.0
        print(f"\n### {path} ({wall:.1f} s wall)\n\n" + profile_table(stages(timings, wall), wall))
    return 0


def finish(doc: dict, args, started: float) -> str:
    doc["machine"]["load_average_end"] = os.getloadavg()[0]
    doc["wall_seconds"] = round(time.perf_counter() - started, 1)
    doc["summary"] = summary(doc)
    (args.out / "speed.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    return render(doc) + "".join(f"\nerror: {k}: {v}" for k, v in (doc.get("errors") or {}).items())


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.manifest:
        return show_manifests(args)
    if args.from_json:
        doc = json.loads(Path(args.from_json).read_text())
        doc["summary"] = summary(doc)
        print(render(doc) + f"\n(judged again from {args.from_json})")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    doc = {"created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "commit": commit,
           "command": " ".join(["benchmarks/speed.py", *(sys.argv[1:] if argv is None else argv)]),
           "machine": {"cpus": os.cpu_count(), "load_average_start": os.getloadavg()[0]},
           "settings": {"build": BUILD_ARGS, "parity_rows": PARITY_ROWS, "litert_loop": LOOP, "models": args.models},
           "models": []}
    with tempfile.TemporaryDirectory(prefix="deploykit-speed-") as tmp:
        for name in ["tiny", *args.models]:
            try:
                result = bench_model(name, args, Path(tmp))
            except Exception as exc:  # noqa: BLE001 - a model that cannot be made or measured is a result
                log(f"{name}: {type(exc).__name__}: {exc}")
                doc.setdefault("errors", {})[name] = f"{type(exc).__name__}: {exc}"
                continue
            if name == "tiny":
                doc["baseline"] = result
            else:
                doc["models"].append(result)
            finish(doc, args, started)  # rewritten after each model: a partial run keeps its figures
    print(finish(doc, args, started))
    print(f"wrote {args.out / 'speed.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
