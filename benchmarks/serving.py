"""TF Serving target: REST latency and throughput through the container at 1, 4 and 16 concurrent
clients, side by side with the in-process SavedModel call on the same rows, in one run.

    .venv/bin/python benchmarks/serving.py                        # the STAND-IN server (tests/serving_standin)
    .venv/bin/python benchmarks/serving.py --base-image tensorflow/serving:2.19.0   # the real server

Builds the bundled example (digits CNN) for the serving target, then measures single-row requests.
The report says which server it measured: the stand-in (a Python server over TensorFlow, for
machines without the real image) or the real tensorflow_model_server.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import deploykit  # noqa: E402
from deploykit.targets.serving import container as ctr  # noqa: E402
from deploykit.targets.serving.rest import CONCURRENCY, RestClient, concurrent, load_figures  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base-image", help="FROM image (default: build/reuse the stand-in)")
    p.add_argument("--seconds", type=float, default=3.0, help="measuring time per concurrency level")
    args = p.parse_args()
    base = args.base_image
    if base is None:
        from tests.serving_standin import ensure_image

        base = ensure_image()
    c = ctr.client()
    with tempfile.TemporaryDirectory(prefix="deploykit-bench-serving-") as tmp:
        doc = deploykit.build(targets=("serving",), out=f"{tmp}/out", base_image=base,
                              latency={"enabled": False}, example_epochs=3)
        a = doc["artifacts"][0]
        d = a["details"]
        labels = c.images.get(d["image"]["id"]).attrs["Config"]["Labels"] or {}
        server = ("STAND-IN (tests/serving_standin: Python server over TensorFlow 2.19, not TF Serving)"
                  if "org.deploykit.standin" in labels else f"real tensorflow_model_server ({base})")
        import numpy as np

        from deploykit.tfenv import tensorflow

        tf = tensorflow()
        with np.load(Path(tmp) / "out" / doc["data"]["inputs"]) as npz:
            inputs = {k: npz[k][:64] for k in npz.files}
        fn = tf.saved_model.load(str(Path(tmp) / "out" / a["path"] / "models" / d["model_name"] / "1")).signatures["serving_default"]
        rows = [{k: tf.constant(v[i : i + 1]) for k, v in inputs.items()} for i in range(len(next(iter(inputs.values()))))]
        for r in rows[:20]:
            fn(**r)
        local = {str(n): concurrent(lambda r: fn(**r), rows, n, args.seconds) for n in CONCURRENCY}
        with ctr.serving(c, d["image"]["id"], d["model_name"], label="bench") as running:
            rest = load_figures(RestClient(running.rest_url, d["model_name"]), inputs, args.seconds)
            network = running.network
        c.images.remove(d["image"]["id"], force=True)  # the measured image; a cached stand-in base stays
    print(f"server measured: {server}")
    print(f"model: bundled example digits_cnn, single-row requests, {args.seconds:.0f} s per level; REST over "
          f"127.0.0.1 ({network} network), container hardened (non-root, read-only rootfs, no capabilities)")
    print(f"{'clients':>7} | {'in-process p50/p90/p99 ms':>27} {'req/s':>8} | {'REST p50/p90/p99 ms':>24} {'req/s':>8} | "
          f"{'p50 x':>7} {'req/s x':>8}")
    for n in map(str, CONCURRENCY):
        lo, re_ = local[n], rest[n]
        print(f"{n:>7} | {lo['p50_ms']:>8.3f} {lo['p90_ms']:>8.3f} {lo['p99_ms']:>8.3f}  {lo['throughput_per_s']:>8.0f} | "
              f"{re_['p50_ms']:>7.3f} {re_['p90_ms']:>7.3f} {re_['p99_ms']:>7.3f}  {re_['throughput_per_s']:>8.0f} | "
              f"{re_['p50_ms'] / lo['p50_ms']:>7.1f} {re_['throughput_per_s'] / lo['throughput_per_s']:>8.2f}")
    print("p50 x: REST p50 / in-process p50; req/s x: REST throughput / in-process throughput")


if __name__ == "__main__":
    main()
