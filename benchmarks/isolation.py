"""The cost of isolation: the same builds sandboxed, with the opt-out, and by the version before it.

    .venv/bin/python benchmarks/isolation.py [--models example,mobilenetv2] [--before COMMIT] [--repeat 1]

Side by side in one run, for each model (the bundled example, trained at build time; MobileNetV2
224x224 with weights=None saved as a tf_keras `.keras` file, with 32 generated images as --data):
  sandboxed  `deploykit build` as shipped: every model job in a bubblewrap worker
  trusted    the same with `--trust-model`: worker processes, no sandbox
  before     the commit before worker isolation (a git worktree of --before, run with this venv):
             the model loaded and converted inside the CLI's own process
Each build runs as its own CLI process; a 10 Hz sampler records the peak resident memory of the CLI
process and of its descendants (the workers and runtime harnesses) at any one time. Prints wall
time, the peaks and the ratios sandboxed/trusted (the sandbox's own cost) and sandboxed/before;
writes benchmarks/results/isolation.json.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BEFORE = "5366d66"  # the last commit whose CLI loaded and converted models in its own process
BUILD = {"example": ["--target", "tflite"],  # every TFLite variant, latency included
         "mobilenetv2": ["--target", "tflite", "--quantize", "float32,float16"]}


def sample(proc: subprocess.Popen, peaks: dict) -> None:
    try:
        root = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                parent = root.memory_info().rss
                kids = 0
                for p in root.children(recursive=True):
                    try:
                        kids += p.memory_info().rss
                    except psutil.Error:
                        pass
            except psutil.Error:
                break
            peaks["parent_mb"] = max(peaks.get("parent_mb", 0), parent / 2**20)
            peaks["workers_mb"] = max(peaks.get("workers_mb", 0), kids / 2**20)
            time.sleep(0.1)
    except psutil.Error:
        pass


def run_build(cli: list[str], args: list[str], env: dict, out: Path) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    peaks: dict = {}
    started = time.perf_counter()
    proc = subprocess.Popen([*cli, "build", *args, "--quiet", "--out", str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    watcher = threading.Thread(target=sample, args=(proc, peaks), daemon=True)
    watcher.start()
    _, stderr = proc.communicate()
    wall = time.perf_counter() - started
    watcher.join(1)
    if proc.returncode != 0:
        raise SystemExit(f"build failed (exit {proc.returncode}): {' '.join(args)}\n{stderr[-2000:]}")
    doc = json.loads((out / "manifest.json").read_text())
    return {"wall_s": round(wall, 1), "parent_peak_mb": round(peaks.get("parent_mb", 0)),
            "workers_peak_mb": round(peaks.get("workers_mb", 0)),
            "artifacts": [f"{a['variant']}:{a['bytes']}" for a in doc["artifacts"]]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="example,mobilenetv2")
    ap.add_argument("--before", default=BEFORE, help="the commit to compare with (git worktree)")
    ap.add_argument("--repeat", type=int, default=1, help="builds per configuration (the best wall time is kept)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args(argv)
    python = sys.executable
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "-1", "PYTHONDONTWRITEBYTECODE": "1"}
    tmp = Path(tempfile.mkdtemp(prefix="dk-isolation-"))
    worktree = tmp / "before"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(worktree), args.before],
                   check=True, capture_output=True)
    # the editable install's import hook would win over PYTHONPATH: the earlier version's CLI drops it
    use = (f"import sys; sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f).lower()]; "
           f"sys.path.insert(0, {str(worktree)!r}); ")
    check = subprocess.run([python, "-c", use + "import deploykit; print(deploykit.__file__)"], env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert check.startswith(str(worktree)), check
    cli = [python, "-c", "import sys; from deploykit.cli import main; sys.argv[0] = 'deploykit'; main()"]
    before_cli = [python, "-c", use + "from deploykit.cli import main; sys.argv[0] = 'deploykit'; main()"]
    results = {}
    try:
        for name in args.models.split(","):
            model_args = list(BUILD[name])
            if name != "example":
                model_args += list(_mobilenet(tmp))
            configs = {"sandboxed": (cli, model_args), "trusted": (cli, [*model_args, "--trust-model"]),
                       "before": (before_cli, model_args)}
            rows = {}
            for label, (c, a) in configs.items():
                runs = [run_build(c, a, env, tmp / f"out-{name}-{label}") for _ in range(args.repeat)]
                rows[label] = min(runs, key=lambda r: r["wall_s"])
                print(f"[isolation] {name} {label}: {rows[label]}", file=sys.stderr, flush=True)
            rows["sandbox_cost"] = round(rows["sandboxed"]["wall_s"] / rows["trusted"]["wall_s"], 3)
            rows["vs_before"] = round(rows["sandboxed"]["wall_s"] / rows["before"]["wall_s"], 3)
            results[name] = rows
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n{'model':<12} {'config':<10} {'wall s':>7} {'CLI peak MB':>12} {'workers peak MB':>16}")
    for name, rows in results.items():
        for label in ("sandboxed", "trusted", "before"):
            r = rows[label]
            print(f"{name:<12} {label:<10} {r['wall_s']:>7.1f} {r['parent_peak_mb']:>12} {r['workers_peak_mb']:>16}")
        print(f"{name:<12} sandboxed/trusted {rows['sandbox_cost']:.3f}   sandboxed/before {rows['vs_before']:.3f}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "isolation.json").write_text(json.dumps({"before": args.before, "load": os.getloadavg(), "models": results}, indent=2))
    return 0


def _mobilenet(tmp: Path) -> tuple[str, ...]:
    model, data = tmp / "mobilenetv2.keras", tmp / "mobilenetv2.npz"
    if not model.exists():
        code = f"""
import sys; sys.path.insert(0, {str(ROOT)!r})
import numpy as np
from benchmarks import models as bm
m = bm.mobilenetv2()
m.save({str(model)!r})
np.savez({str(data)!r}, **bm.mobilenetv2_data(32))
"""
        subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "CUDA_VISIBLE_DEVICES": "-1"})
    return ("--model", str(model), "--data", str(data))


if __name__ == "__main__":
    sys.exit(main())
