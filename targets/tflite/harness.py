"""Runs a .tflite artifact inside the LiteRT interpreter (ai-edge-litert), in its own process.

Imports only numpy and the runtime (never TensorFlow, unless the artifact needs the Flex
delegate), and in latency mode deploykit's timing loop (`deploykit.validation.latency`, numpy only).
Usage: python harness.py REQUEST.json; writes the JSON result to request["response"].

Modes:
  parity   run every row of the inputs one sample at a time; write outputs (dequantized) to .npz
  latency  load time, first-inference time, warm-up, then timed single-sample invocations
  batch    load and run each of request["models"] on the first input row, each in a forked child
           (one runtime import for all, a crash or hang isolated to its file): a result per model
"""
import json
import os
import resource
import sys
import time
import traceback

import numpy as np


def _interpreter(request):
    if request.get("flex"):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf  # the Flex delegate ships with TensorFlow only

        return tf.lite.Interpreter, "tensorflow.lite", tf.__version__
    from importlib.metadata import version

    from ai_edge_litert.interpreter import Interpreter

    return Interpreter, "litert", version("ai-edge-litert")


def _die_with_parent(parent):
    """Be killed when `parent` dies (PR_SET_PDEATHSIG), so a killed deploykit leaves no runtimes."""
    if not parent:
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
    except (OSError, AttributeError):
        pass
    if os.getppid() != int(parent):  # it died before the call above
        os._exit(1)


def _peak_rss_mb():
    """Peak resident memory of this process. /proc's VmHWM, since ru_maxrss survives exec and
    would report the parent's peak."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _latency_module():
    """deploykit's one timing loop (`deploykit.validation.latency` imports only numpy). This runs
    with deploykit's Python; from a source checkout that is not installed, the package is found
    beside `targets/`."""
    try:
        from deploykit.validation import latency
    except ImportError:
        here = os.path.dirname(os.path.abspath(__file__))
        root = os.path.dirname(os.path.dirname(here))  # targets/tflite -> the checkout
        if not os.path.isfile(os.path.join(root, "deploykit", "validation", "latency.py")):
            raise
        sys.path.append(root)
        if getattr(sys.modules.get("deploykit"), "__file__", None) is None:  # a namespace package: stale
            sys.modules.pop("deploykit", None)
        from deploykit.validation import latency
    return latency


def _quantize(x, detail):
    if x.dtype.kind == "U":  # text: the interpreter's string tensors take UTF-8 bytes
        return np.char.encode(x, "utf-8")
    scale, zero = detail["quantization"]
    dtype = detail["dtype"]
    if scale and np.issubdtype(dtype, np.integer) and not np.issubdtype(x.dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)
    return x.astype(dtype, copy=False)


def _dequantize(y, detail):
    scale, zero = detail["quantization"]
    if scale and np.issubdtype(y.dtype, np.integer):
        return ((y.astype(np.float32) - zero) * scale).astype(np.float32)
    return y


class Runner:
    """One signature, fed one sample at a time, with int8/int16 I/O handled here."""

    def __init__(self, request):
        cls, self.runtime, self.version = _interpreter(request)
        t0 = time.perf_counter()
        self.interpreter = cls(model_path=request["model"], num_threads=int(request.get("threads", 1)))
        signatures = self.interpreter.get_signature_list()
        key = "serving_default" if "serving_default" in signatures else next(iter(signatures))
        self.runner = self.interpreter.get_signature_runner(key)
        self.in_details = self.runner.get_input_details()
        self.out_details = self.runner.get_output_details()
        self.single_signature = len(signatures) == 1  # its tensors are the interpreter's own (subgraph 0)
        self.load_ms = (time.perf_counter() - t0) * 1000

    def feed(self, sample):
        return {n: _quantize(sample[n], d) for n, d in self.in_details.items()}

    def __call__(self, feed):
        out = self.runner(**feed)
        return {n: _dequantize(out[n], self.out_details[n]) for n in out}

    def timed_call(self, feed):
        """The call latency mode times: set_tensor, invoke, get_tensor on the signature's tensors, as
        a deployment's own loop does, without the signature runner's per-call Python (name checks, a
        dict per call: about 1 us, a fifth of a small model's call). It releases the runner, which
        holds the interpreter's internals (invoke() refuses to run while they are referenced): after
        it, only the calls it returns run the model. The tensors are sized and allocated here, so the
        first timed call is the first inference alone. A model with several signatures keeps its runner."""
        if not self.single_signature:
            return lambda _: self.runner(**feed)
        self.runner = None
        it = self.interpreter
        inputs = [(self.in_details[n]["index"], x) for n, x in feed.items()]
        outputs = [d["index"] for d in self.out_details.values()]
        for index, x in inputs:  # the tensors sized for this feed (the runner did this on its first call)
            it.resize_tensor_input(index, x.shape)
        it.allocate_tensors()

        def call(_):
            for index, x in inputs:
                it.set_tensor(index, x)
            it.invoke()
            return [it.get_tensor(i) for i in outputs]

        return call


def parity(request, inputs):
    run = Runner(request)
    rows = len(next(iter(inputs.values())))
    outs = {}
    for i in range(rows):
        sample = {n: inputs[n][i : i + 1] for n in run.in_details}
        # each row is its own request: stateful kernels (the fused LSTM/GRU ops keep their state in
        # variables between invocations) start from their initial state, as the model's own call does
        # (from the second row: the first invocation allocates those tensors)
        if i:
            run.interpreter.reset_all_variables()
        for n, y in run(run.feed(sample)).items():
            outs.setdefault(n, []).append(y)
    np.savez(request["outputs"], **{n: np.concatenate(v) for n, v in outs.items()})
    return {"rows": rows, "runtime": run.runtime, "runtime_version": run.version}


def latency(request, inputs):
    latency_mod = _latency_module()  # imported before the memory baseline: model_rss_mb is the model's
    rss_before = _peak_rss_mb()
    run = Runner(request)
    feed = run.feed({n: inputs[n][0:1] for n in run.in_details})
    sampling = latency_mod.Sampling.of(request)
    timings, first_ms, stopped = latency_mod.timed_calls(
        run.timed_call(feed), int(request["warmup"]), sampling,
        warmup_seconds=sampling.max_seconds,  # the warm-up is bounded by max_seconds too, for slow models
    )
    peak = _peak_rss_mb()
    return {
        "timings_ms": timings,
        "stopped": stopped,
        "warmup": int(request["warmup"]),
        "load_ms": run.load_ms,
        "first_inference_ms": first_ms,
        "peak_rss_mb": peak,
        "model_rss_mb": peak - rss_before,
        "threads": int(request.get("threads", 1)),
        "process_threads": len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else None,
        "runtime": run.runtime,
        "runtime_version": run.version,
    }


def _probe(request, inputs, model):
    """One model of a batch: load it, check its inputs against the data, run one row."""
    run = Runner({**request, "model": model})
    missing = [n for n in run.in_details if n not in inputs]
    if missing:
        raise ValueError(f"model inputs {missing} are not in the data")
    outputs = run(run.feed({n: inputs[n][0:1] for n in run.in_details}))
    return {"outputs": sorted(outputs), "finite": all(bool(np.isfinite(y).all()) for y in outputs.values())}


def _error_line(exc):
    return traceback.format_exception_only(type(exc), exc)[-1].strip()[:500]


def batch(request, inputs):
    """Fork per model: the runtime is imported once; a native crash or a hang kills one child only."""
    import select
    import signal

    _interpreter(request)  # import the runtime before forking: children start warm
    limit = float(request.get("timeout_per_model", 10.0))
    harness_pid = os.getpid()
    results = []
    for model in request["models"]:
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: one model, result as JSON on the pipe, no cleanup handlers
            os.close(read_fd)
            _die_with_parent(harness_pid)
            try:
                result = {"ok": True, **_probe(request, inputs, model)}
            except BaseException as exc:  # noqa: BLE001 - reported for this model only
                result = {"ok": False, "error": _error_line(exc)}
            os.write(write_fd, json.dumps(result).encode())
            os._exit(0)
        os.close(write_fd)
        chunks, deadline = [], time.monotonic() + limit
        while True:
            ready, _, _ = select.select([read_fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:  # hung: kill it
                os.kill(pid, signal.SIGKILL)
                break
            chunk = os.read(read_fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        os.close(read_fd)
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status) and not chunks:
            sig = signal.Signals(os.WTERMSIG(status)).name
            hung = sig == "SIGKILL" and time.monotonic() >= deadline
            result = {"ok": False, "error": f"runtime did not finish within {limit:.0f} s" if hung else f"runtime crashed ({sig})"}
        else:
            try:
                result = json.loads(b"".join(chunks))
            except ValueError:
                result = {"ok": False, "error": f"runtime exited with status {status} without a result"}
        results.append({"model": model, **result})
    return {"results": results}


MODES = {"parity": parity, "latency": latency, "batch": batch}


def main(path):
    _die_with_parent(os.environ.get("DEPLOYKIT_PARENT_PID"))
    with open(path) as fh:
        request = json.load(fh)
    try:
        with np.load(request["inputs"], allow_pickle=False) as npz:
            inputs = {k: npz[k] for k in npz.files}
        result = MODES[request["mode"]](request, inputs)
        result["ok"] = True
    except Exception as exc:  # reported to the parent as this artifact's error
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        result = {"ok": False, "error": last[:500]}
    with open(request["response"], "w") as fh:
        json.dump(result, fh)


if __name__ == "__main__":
    main(sys.argv[1])
