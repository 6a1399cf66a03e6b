"""`--local-workers N`: run a multi-worker (or parameter-server) job as local processes.

Each task gets a generated TF_CONFIG on 127.0.0.1 with free ports. Every line of every task is kept
in RUN_DIR/logs/NAME.log; the console shows the chief's lines (the `chief` task, else `worker-0`)
with a `[NAME]` prefix, and another task's line only when it is a warning or an error and no task
showed the same text before: the workers of a collective job print the same lines in lockstep,
and their `detail` lines (epoch beginnings) are for the logs only. A task that dies is reported by name, pid and
exit status. Collective training cannot continue with a member missing, so recovery restarts the
whole job (new ports, same run folder): BackupAndRestore then resumes from the last finished epoch,
as a Kubernetes TFJob does when its pods restart. `max_restarts` bounds how often.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from deploykit.errors import BadInputError, DeployKitError
from deploykit.fit.config import TrainConfig
from deploykit.progress import Reporter

# TensorFlow's native start-up chatter: kept in RUN_DIR/logs/, not echoed to the console.
_NOISE = re.compile(r"computation placer|cuInit|Unable to register cu|absl::InitializeLog|cuda_|grpc_server_lib|"
                    r"coordination_service|oneDNN custom operations|rebuild TensorFlow with|cpu_feature_guard|"
                    r"^\s*$|^[IWE]\d{4} ")


class WorkerFailedError(DeployKitError):
    """A worker process died and the job could not be recovered."""

    exit_code = 1
    code = "worker_failed"


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def cluster_for(cfg: TrainConfig, workers: int) -> tuple[dict, list[tuple[str, int]]]:
    """(cluster spec, [(task type, index)]) for a local job."""
    if cfg.strategy == "parameter_server":
        ports = free_ports(1 + cfg.num_ps + workers)
        cluster = {"chief": [f"127.0.0.1:{ports[0]}"],
                   "ps": [f"127.0.0.1:{p}" for p in ports[1:1 + cfg.num_ps]],
                   "worker": [f"127.0.0.1:{p}" for p in ports[1 + cfg.num_ps:]]}
    else:
        cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(workers)]}
    tasks = [(kind, i) for kind, addrs in cluster.items() for i in range(len(addrs))]
    return cluster, tasks


def _name(kind: str, index: int) -> str:
    return "chief" if kind == "chief" else f"{kind}-{index}"


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


_PROBLEM = re.compile(r"warning|error|exception|traceback|killed|failed", re.I)


class _Console:
    """What the tasks' lines show on the console (see the module docstring)."""

    def __init__(self, stream, chief: str):
        self.stream, self.chief = stream, chief
        self._shown: set[str] = set()
        self._lock = threading.Lock()

    def line(self, task: str, line: str) -> None:
        if self.stream is None or _NOISE.search(line) or line.startswith(Reporter.DETAIL):
            return
        with self._lock:
            if task != self.chief and (not _PROBLEM.search(line) or line in self._shown):
                return
            self._shown.add(line)
            print(f"[{task}] {line}", file=self.stream, flush=True)


def chief_of(names: list[str]) -> str:
    """The task whose lines the console shows: the chief, else worker 0 (MultiWorkerMirroredStrategy's)."""
    return "chief" if "chief" in names else "worker-0" if "worker-0" in names else names[0]


class _Task:
    def __init__(self, name: str, proc: subprocess.Popen, log: Path, console: _Console):
        self.name, self.proc, self.last_error = name, proc, ""
        self._thread = threading.Thread(target=self._pump, args=(log, console), daemon=True)
        self._thread.start()

    def _pump(self, log: Path, console: _Console) -> None:
        with log.open("a", encoding="utf-8") as f:
            for line in self.proc.stdout:
                line = line.rstrip("\n")
                if line.startswith("deploykit: error:"):
                    self.last_error = line[len("deploykit: error:"):].strip()
                f.write(line + "\n")
                f.flush()
                console.line(self.name, line)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._thread.join(5)


def _start(cfg: TrainConfig, out: Path, workers: int, attempt: int, stream) -> list[_Task]:
    cluster, tasks = cluster_for(cfg, workers)
    config_json = out / "train-config.json"
    config_json.write_text(json.dumps(cfg.to_json(), indent=2) + "\n")
    (out / "logs").mkdir(parents=True, exist_ok=True)
    threads = max(1, (os.cpu_count() or 1) // len(tasks))
    console = _Console(stream, chief_of([_name(kind, index) for kind, index in tasks]))
    started = []
    for kind, index in tasks:
        name = _name(kind, index)
        env = {"TF_CPP_MIN_LOG_LEVEL": "2", "GRPC_VERBOSITY": "ERROR", **os.environ, "PYTHONUNBUFFERED": "1",
               "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": kind, "index": index}})}
        log = out / "logs" / f"{name}.log"
        with log.open("a") as f:
            f.write(f"--- attempt {attempt} ---\n")
        proc = subprocess.Popen(
            [sys.executable, "-m", "deploykit.fit.worker", "--config-json", str(config_json), "--out", str(out),
             "--threads", str(threads)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
            cwd=os.getcwd())
        started.append(_Task(name, proc, log, console))
    (out / "workers.json").write_text(json.dumps(
        {"attempt": attempt, "cluster": cluster, "pids": {t.name: t.proc.pid for t in started}}, indent=2) + "\n")
    return started


def _supervise(tasks: list[_Task], ps_job: bool) -> _Task | None:
    """Wait until the job finishes (None) or a task fails (that task)."""
    trainers = [t for t in tasks if t.name == "chief"] if ps_job else tasks
    while True:
        for t in tasks:
            code = t.proc.poll()
            if code is not None and code != 0:
                return t
            if code == 0 and t not in trainers:  # a ps/worker server must not exit on its own
                return t
        if all(t.proc.poll() == 0 for t in trainers):
            return None
        time.sleep(0.2)


def launch(cfg: TrainConfig, out: str | Path, workers: int, *, max_restarts: int = 0,
           reporter: Reporter | None = None) -> dict:
    reporter = reporter or Reporter()
    if workers < 1:
        raise BadInputError("--local-workers: must be at least 1")
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    ps_job = cfg.strategy == "parameter_server"
    (out / "metrics.json").unlink(missing_ok=True)  # never report a previous run's figures
    failures: list[dict] = []
    stream = None if reporter.quiet else reporter.stream  # logs/ keeps every line either way
    started = time.perf_counter()
    for attempt in range(max_restarts + 1):
        tasks = _start(cfg, out, workers, attempt, stream)
        reporter.info(f"started {len(tasks)} local task(s) ({', '.join(f'{t.name}:{t.proc.pid}' for t in tasks)}), "
                      f"strategy {cfg.strategy}, attempt {attempt + 1}/{max_restarts + 1}")
        if attempt == 0 and len(tasks) > 1:
            reporter.info(f"showing {chief_of([t.name for t in tasks])}'s log (other tasks: warnings and errors only); "
                          f"every task's full log is in {out / 'logs'}/")
        try:
            failed = _supervise(tasks, ps_job)
        finally:
            for t in tasks:
                t.stop()
        if failed is None:
            break
        code = failed.proc.returncode
        if code == BadInputError.exit_code:  # the settings are wrong: restarting cannot help
            raise BadInputError(failed.last_error or f"{failed.name} rejected the settings")
        what = f"{failed.name} (pid {failed.proc.pid}) died: {_describe(code)}"
        failures.append({"task": failed.name, "pid": failed.proc.pid, "status": _describe(code), "attempt": attempt + 1,
                         "last_error": failed.last_error or None})
        if attempt < max_restarts:
            reporter.warn(f"{what}; restarting the job from the last backup ({attempt + 1}/{max_restarts} restarts)")
            continue
        hint = "" if max_restarts else " (use --max-restarts N to recover from the backup)"
        raise WorkerFailedError(f"{what}; job stopped after {attempt + 1} attempt(s){hint}. Logs: {out / 'logs'}",
                                details={"failures": failures})
    metrics_file = out / "metrics.json"
    if not metrics_file.exists():
        raise WorkerFailedError(f"the job finished but the chief wrote no {metrics_file}")
    metrics = json.loads(metrics_file.read_text())
    metrics["launcher"] = {"local_workers": workers, "attempts": len(failures) + 1, "restarts": len(failures),
                           "failures": failures, "wall_time_s": round(time.perf_counter() - started, 3)}
    partial = out / "metrics.json.partial"  # a reader (deploykit build --model RUN) never sees half of it
    partial.write_text(json.dumps(metrics, indent=2) + "\n")
    os.replace(partial, metrics_file)
    return metrics
