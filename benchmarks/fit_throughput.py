"""Training throughput of the fit stage on the bundled digits CNN: mirrored in one process, and
multi_worker as 1 and 2 local worker processes on 127.0.0.1.

Every configuration runs the same job (global batch, steps per epoch, epochs, seed) through the real
command (`python -m deploykit train ... --json`), one configuration at a time, each in fresh
processes. Prints a table and writes benchmarks/results/fit_throughput.json.

    python benchmarks/fit_throughput.py [--epochs 4] [--steps 60] [--batch-size 64] [--repeats 1]

Columns: `ex/s (fit)` is epochs x steps x global batch / the time inside `model.fit` (includes graph
tracing and the first epoch's warm-up); `ex/s (steady)` uses the mean time of epochs 2..N only;
`wall` is the whole command, process start-up and export included. Local workers share the
machine's cores (the launcher gives each cores // tasks intra-op threads).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "fit_throughput.json"
CONFIGS = {
    "mirrored (in-process)": {"strategy": "mirrored", "local_workers": 0},
    "1 local worker": {"strategy": "multi_worker", "local_workers": 1},
    "2 local workers": {"strategy": "multi_worker", "local_workers": 2},
}


def run_one(name: str, spec: dict, args, workdir: Path) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    out = workdir / name.replace(" ", "_").replace("(", "").replace(")", "")
    cfg = workdir / f"{out.name}.toml"
    cfg.write_text(f'[train]\nstrategy = "{spec["strategy"]}"\nepochs = {args.epochs}\nsteps_per_epoch = {args.steps}\n'
                   f'batch_size = {args.batch_size}\nseed = 0\ntensorboard = false\n')
    cmd = [sys.executable, "-m", "deploykit", "train", "--config", str(cfg), "--out", str(out), "--json", "--quiet"]
    if spec["local_workers"]:
        cmd += ["--local-workers", str(spec["local_workers"])]
    start = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=900,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall = time.perf_counter() - start
    if r.returncode != 0:
        raise SystemExit(f"{name} failed (exit {r.returncode}):\n{r.stderr[-3000:]}")
    m = json.loads(r.stdout)
    per_epoch = args.steps * args.batch_size
    steady = m["epoch_times_s"][1:] or m["epoch_times_s"]
    return {"config": name, "strategy": m["strategy"], "processes": spec["local_workers"] or 1, "replicas": m["replicas"],
            "examples_per_sec_fit": m["examples_per_sec"],
            "examples_per_sec_steady": round(per_epoch / statistics.mean(steady), 1),
            "fit_time_s": m["fit_time_s"], "wall_time_s": round(wall, 1),
            "val_accuracy": round(m["final_validation"]["accuracy"], 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=60, help="steps per epoch")
    parser.add_argument("--batch-size", type=int, default=64, help="global batch size")
    parser.add_argument("--repeats", type=int, default=1, help="runs per configuration (the table shows the median)")
    args = parser.parse_args()
    load = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="dk-fit-bench-") as tmp:
        for name, spec in CONFIGS.items():
            runs = []
            for i in range(args.repeats):
                print(f"[bench] {name} run {i + 1}/{args.repeats} ...", file=sys.stderr, flush=True)
                runs.append(run_one(name, spec, args, Path(tmp) / f"r{i}"))
            best = sorted(runs, key=lambda r: r["examples_per_sec_steady"])[len(runs) // 2]
            rows.append({**best, "runs": runs})
    header = f"{'config':<22} {'procs':>5} {'replicas':>8} {'ex/s (fit)':>11} {'ex/s (steady)':>14} {'fit s':>7} {'wall s':>7} {'val acc':>8}"
    print(f"fit throughput, bundled digits CNN: {args.epochs} epochs x {args.steps} steps x global batch {args.batch_size} "
          f"({os.cpu_count()} cores, load at start {load[0]:.2f})")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['config']:<22} {r['processes']:>5} {r['replicas']:>8} {r['examples_per_sec_fit']:>11} "
              f"{r['examples_per_sec_steady']:>14} {r['fit_time_s']:>7} {r['wall_time_s']:>7} {r['val_accuracy']:>8}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                   "settings": vars(args), "cpu_count": os.cpu_count(), "loadavg_at_start": load,
                                   "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
