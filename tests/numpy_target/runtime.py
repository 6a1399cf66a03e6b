"""The numpy target's runtime, run as a child process: `python runtime.py REQUEST.json`."""
import json
import resource
import sys
import time

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def activation(x, name):
    if name == "relu":
        return np.maximum(x, 0)
    if name == "softmax":
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    return x


def forward(layers, weights, x):
    for spec in layers:
        w = [weights[k].astype(np.float32) for k in spec["weights"]]
        kind = spec["kind"]
        if kind == "Conv2D":
            kh, kw = w[0].shape[:2]
            if spec["padding"] == "same":
                x = np.pad(x, ((0, 0), (kh // 2, (kh - 1) // 2), (kw // 2, (kw - 1) // 2), (0, 0)))
            windows = sliding_window_view(x, (kh, kw), axis=(1, 2))  # N, H, W, C, kh, kw
            x = activation(np.einsum("nhwcij,ijcf->nhwf", windows, w[0]) + w[1], spec["activation"])
        elif kind == "MaxPooling2D":
            n, h, wd, c = x.shape
            x = x[:, : h // 2 * 2, : wd // 2 * 2].reshape(n, h // 2, 2, wd // 2, 2, c).max(axis=(2, 4))
        elif kind == "Flatten":
            x = x.reshape(len(x), -1)
        elif kind == "Dense":
            x = activation(x @ w[0] + w[1], spec["activation"])
    return x.astype(np.float32)


def main(path):
    req = json.loads(open(path).read())
    t0 = time.perf_counter()
    doc = json.loads(open(f"{req['artifact']}/layers.json").read())
    with np.load(f"{req['artifact']}/weights.npz", allow_pickle=False) as npz:
        weights = {k: npz[k] for k in npz.files}
    load_ms = (time.perf_counter() - t0) * 1000
    with np.load(req["inputs"], allow_pickle=False) as npz:
        x = npz[doc["input"]].astype(np.float32)
    result = {"ok": True, "runtime": "numpy", "runtime_version": np.__version__, "load_ms": load_ms}
    if req["mode"] == "parity":
        np.savez(req["outputs"], **{doc["output"]: forward(doc["layers"], weights, x)})
        result["rows"] = len(x)
    else:
        t = time.perf_counter()
        forward(doc["layers"], weights, x[:1])
        result["first_inference_ms"] = (time.perf_counter() - t) * 1000
        for i in range(req["warmup"]):
            forward(doc["layers"], weights, x[i % len(x): i % len(x) + 1])
        timings, end = [], time.perf_counter() + req["max_seconds"]
        for i in range(req["iterations"]):
            t = time.perf_counter()
            forward(doc["layers"], weights, x[i % len(x): i % len(x) + 1])
            timings.append((time.perf_counter() - t) * 1000)
            if time.perf_counter() > end:
                break
        result.update(timings_ms=timings, warmup=req["warmup"], threads=1,
                      peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    with open(req["response"], "w") as fh:
        json.dump(result, fh)


if __name__ == "__main__":
    main(sys.argv[1])
