"""TF Serving target under load: REST vs gRPC p50/p99 and throughput at 1, 4, 16 and 64 concurrent
clients, server-side batching off and on, in one run.

    .venv/bin/python benchmarks/serving.py       # FROM $DEPLOYKIT_SERVING_BASE_IMAGE, else the STAND-IN
    .venv/bin/python benchmarks/serving.py --base-image tensorflow/serving:2.19.0   # the real server

Builds the bundled example (digits CNN) for the serving target (no latency phase), then runs the
build's own load stage (deploykit/targets/serving/load.py: single-row Predict on serving_default, every
answer checked) with longer windows, against the image started as the build starts it: hardened, on
127.0.0.1, batching off, then a second container with `--enable_batching` and the repository's
`batching_parameters.txt`. Prints which server it measured: the STAND-IN (tests/serving_standin, a
Python server over TensorFlow with a simple batcher, for machines without the real image) or the real
tensorflow_model_server. Figures also go to benchmarks/results/serving.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import deploykit  # noqa: E402
from deploykit.targets.serving import container as ctr  # noqa: E402
from deploykit.targets.serving import load, repo  # noqa: E402
from deploykit.targets.serving.settings import int_list  # noqa: E402
from deploykit.validation import load as load_stats  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "serving.json"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base-image", help="FROM image (default: $DEPLOYKIT_SERVING_BASE_IMAGE, else build/reuse the stand-in)")
    p.add_argument("--levels", type=int_list, default=(1, 4, 16, 64), help="concurrent clients per level (1,4,16,64)")
    p.add_argument("--seconds", type=float, default=2.0, help="measuring time per level and API (2)")
    p.add_argument("--requests", type=int, default=100_000, help="at most this many requests per level (100000)")
    args = p.parse_args()
    base = args.base_image or os.environ.get("DEPLOYKIT_SERVING_BASE_IMAGE")
    if not base:
        from tests.serving_standin import ensure_image

        base = ensure_image()
    plan = load.Plan(tuple(args.levels), args.seconds, args.requests, load.APIS, load.BATCHING)
    c = ctr.client()
    loadavg = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="deploykit-bench-serving-") as tmp:
        doc = deploykit.build(targets=("serving",), out=f"{tmp}/out", base_image=base,
                              latency={"enabled": False}, example_epochs=3)
        a = doc["artifacts"][0]
        d = a["details"]
        labels = c.images.get(d["image"]["id"]).attrs["Config"]["Labels"] or {}
        standin = "org.deploykit.standin" in labels
        server = ("STAND-IN (tests/serving_standin: Python server over TensorFlow 2.19 with a simple batcher, "
                  f"not TF Serving; FROM {base})" if standin else f"real tensorflow_model_server ({base})")
        import numpy as np

        with np.load(Path(tmp) / "out" / doc["data"]["inputs"]) as npz:
            rows = load.single_rows({k: npz[k] for k in npz.files})
        model, version = d["model_name"], d["model_version"]
        levels: list[dict] = []
        expected = None
        started = time.perf_counter()
        for batching in plan.batching:
            flags = repo.BATCHING_FLAGS if batching == "on" else None
            with ctr.serving(c, d["image"]["id"], model, label=f"bench-{batching}", flags=flags) as running:
                if expected is None:  # the batching-off server's answers, one row at a time
                    expected = load.expected_outputs(running.rest_url, model, version, rows)
                levels += load.measure(plan, batching, running.rest_url, f"127.0.0.1:{running.grpc_port}", model,
                                       version, rows, expected)
                network = running.network
        seconds = time.perf_counter() - started
        c.images.remove(d["image"]["id"], force=True)  # the measured image; a cached stand-in base stays
    summary = load_stats.summarize(levels, {**plan.to_json(), "rows": len(rows), "network": network})
    batching_file = repo.batching_parameters().strip().replace("\n", "; ")
    print(f"server measured: {server}")
    print(f"model: bundled example digits_cnn; single-row Predict on serving_default, {args.seconds:g} s (or "
          f"{args.requests} requests) per level and API, {len(rows)} rows cycled, every answer checked; clients "
          f"on 127.0.0.1 ({network} network), one connection each; container hardened (non-root, read-only rootfs, "
          f"no capabilities); load average at start {loadavg[0]:.2f} on {os.cpu_count()} cores")
    print(f"batching on: --enable_batching with the repository's batching_parameters.txt ({batching_file})")
    print(table(summary["levels"]))
    failures = load_stats.failures(summary, {})
    for f in failures:
        print(f"FAIL {f.message}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"server": server, "standin": standin, "base_image": base,
                                   "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                   "loadavg": loadavg, "cpus": os.cpu_count(), "seconds": round(seconds, 1),
                                   "batching_parameters": repo.batching_parameters(), **summary}, indent=2))
    print(f"figures: {RESULTS.relative_to(ROOT)} ({seconds:.0f} s of measuring)")


def table(levels: list[dict]) -> str:
    """batching x clients rows; REST and gRPC p50/p99 (ms) and throughput (req/s) side by side."""
    by = {(lv["batching"], lv["clients"], lv["api"]): lv for lv in levels}
    keys = sorted({(b, n) for b, n, _ in by}, key=lambda k: (load.BATCHING.index(k[0]), k[1]))
    head = (f"{'batching':>8} {'clients':>7} | {'REST p50':>8} {'p99':>7} {'req/s':>6} | {'gRPC p50':>8} {'p99':>7} "
            f"{'req/s':>6} | {'gRPC/REST req/s':>15} {'errors':>6}")
    lines = [head, "-" * len(head)]

    def cells(lv):
        if lv is None or lv["p50_ms"] is None:
            return f"{'-':>8} {'-':>7} {'-':>6}"
        return f"{lv['p50_ms']:>8.2f} {lv['p99_ms']:>7.2f} {lv['throughput_per_s']:>6.0f}"

    for batching, n in keys:
        rest, grpc = by.get((batching, n, "rest")), by.get((batching, n, "grpc"))
        ratio = (grpc["throughput_per_s"] / rest["throughput_per_s"]
                 if rest and grpc and rest["throughput_per_s"] and grpc["throughput_per_s"] else None)
        errors = sum(lv["errors"] for lv in (rest, grpc) if lv)
        lines.append(f"{batching:>8} {n:>7} | {cells(rest)} | {cells(grpc)} | "
                     f"{(f'{ratio:.2f}' if ratio else '-'):>15} {errors:>6}")
    lines.append("p50/p99 in ms of the OK answers; req/s = OK answers per second of the level's wall time")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
