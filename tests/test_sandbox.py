"""The sandbox model work runs in (deploykit/sandbox.py, bubblewrap), tested for real.

A worker must not read the user's home or other files, write outside its scratch folder, or reach
the network, 127.0.0.1 included; the model it loads runs only there. Where the sandbox cannot start,
a model file from elsewhere is refused with exit 4 naming the opt-out, never loaded unsandboxed.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from deploykit import sandbox

from .conftest import ROOT, run_cli

pytestmark = pytest.mark.skipif(sandbox.unavailable_reason() is not None and not os.environ.get("CI"),
                                reason=f"no sandbox here: {sandbox.unavailable_reason()}")


def in_sandbox(code: str, scratch: Path, reads=()) -> subprocess.CompletedProcess:
    """`code` in the sandbox a worker gets (the same `sandbox.command`)."""
    scratch.mkdir(parents=True, exist_ok=True)
    cmd = sandbox.command([sys.executable, "-c", textwrap.dedent(code)], reads=reads, scratch=scratch)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.fixture
def home_secret():
    """A file in the user's home (the machine's real home folder), removed afterwards."""
    path = Path.home() / f".deploykit-test-secret-{uuid.uuid4().hex[:8]}"
    path.write_text("secret")
    yield path
    path.unlink()


def test_sandbox_starts_here():
    assert sandbox.unavailable_reason() is None  # setup.sh installs bubblewrap; CI must have it


def test_worker_can_run_python_and_write_its_scratch_folder(tmp_path):
    proc = in_sandbox("""
        import numpy, pathlib
        pathlib.Path("ok.txt").write_text(str(numpy.arange(3).sum()))
    """, tmp_path / "scratch")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "scratch" / "ok.txt").read_text() == "3"


def test_worker_cannot_read_the_users_home(tmp_path, home_secret):
    proc = in_sandbox(f"open({str(home_secret)!r}).read()", tmp_path / "scratch")
    assert proc.returncode != 0 and ("FileNotFoundError" in proc.stderr or "PermissionError" in proc.stderr)
    listing = in_sandbox(f"import os; print(os.path.exists({str(Path.home())!r}) and os.listdir({str(Path.home())!r}))",
                         tmp_path / "scratch2")
    assert home_secret.name not in listing.stdout


def test_worker_cannot_read_other_files_beside_its_own(tmp_path):
    other = tmp_path / "other.txt"
    other.write_text("not yours")
    proc = in_sandbox(f"open({str(other)!r}).read()", tmp_path / "scratch")
    assert proc.returncode != 0 and "FileNotFoundError" in proc.stderr


def test_worker_reads_only_read_only(tmp_path):
    model = tmp_path / "model.bin"
    model.write_text("weights")
    proc = in_sandbox(f"""
        print(open({str(model)!r}).read())
        open({str(model)!r}, "w").write("tampered")
    """, tmp_path / "scratch", reads=[model])
    assert proc.stdout.strip() == "weights"
    assert proc.returncode != 0 and "Read-only file system" in proc.stderr
    assert model.read_text() == "weights"


def test_worker_cannot_write_outside_its_folder(tmp_path):
    tag = uuid.uuid4().hex[:6]
    targets = [tmp_path / "outside.txt", ROOT / f"planted-{tag}.txt", Path(sys.prefix) / f"planted-{tag}.txt",
               Path("/var") / f"deploykit-planted-{tag}.txt"]
    code = "\n".join(f"""
try:
    open({str(p)!r}, "w").write("x")
    print("wrote", {str(p)!r})
except OSError as exc:
    print("refused", {str(p)!r}, type(exc).__name__)""" for p in targets)
    proc = in_sandbox(code, tmp_path / "scratch")
    try:
        assert proc.returncode == 0, proc.stderr
        assert not any(p.exists() for p in targets)  # nothing reached the host
        # outside /tmp (the worker's own empty tmpfs) the file system is read-only: the write fails there
        for p in targets:
            if not p.resolve().is_relative_to("/tmp"):
                assert f"refused {p}" in proc.stdout, proc.stdout
    finally:
        for p in targets:
            p.unlink(missing_ok=True)


def test_worker_cannot_reach_localhost_or_the_network(tmp_path):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    try:
        proc = in_sandbox(f"""
            import socket
            for host in ("127.0.0.1", "10.0.0.1"):
                try:
                    socket.create_connection((host, {port}), timeout=3)
                    print("connected", host)
                except OSError as exc:
                    print("refused", host, type(exc).__name__)
        """, tmp_path / "scratch")
        server.settimeout(0.5)
        with pytest.raises(socket.timeout):  # nothing ever arrived at the host's listener
            server.accept()
    finally:
        server.close()
    assert proc.returncode == 0, proc.stderr
    assert "connected" not in proc.stdout and proc.stdout.count("refused") == 2


def test_worker_environment_is_cleared(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "do-not-leak")
    proc = in_sandbox("import os, json; print(json.dumps(dict(os.environ)))", tmp_path / "scratch")
    env = json.loads(proc.stdout)
    assert "AWS_SECRET_ACCESS_KEY" not in env and env["HOME"] == str((tmp_path / "scratch").resolve())


def test_model_code_that_policy_was_told_to_allow_still_runs_only_in_the_sandbox(tmp_path, home_secret):
    """The second wall: a Lambda layer (allowed with --allow-unsafe-deserialization) whose code
    tries to plant a canary and read a file of the user's. It runs inside the sandbox, where
    neither exists: the canary never appears and the secret reaches no artifact."""
    canary = tmp_path / "canary.txt"
    model = tmp_path / "lambda.keras"
    payload = (f"lambda x: (open({str(canary)!r}, 'w').write(open({str(home_secret)!r}).read()), x)[1]")
    script = f"""
import os
os.environ["TF_USE_LEGACY_KERAS"] = "1"
import tf_keras as keras
inp = keras.Input((4,), name="x")
out = keras.layers.Dense(2, name="y")(keras.layers.Lambda({payload})(inp))
keras.Model(inp, out).save({str(model)!r})
"""
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, timeout=300)
    canary.unlink(missing_ok=True)  # the payload ran once while the model was traced for saving
    proc = run_cli("build", "--model", str(model), "--allow-unsafe-deserialization", "--quantize", "float32",
                   "--no-latency", "--quiet", "--out", str(tmp_path / "out"), timeout=300)
    assert proc.returncode == 2, proc.stderr[-1500:]  # the payload's open() failed: the model could not run
    assert "deploykit: error:" in proc.stderr
    assert not canary.exists()
    assert not (tmp_path / "out").exists()


def test_no_sandbox_refuses_model_files_with_exit_4_naming_the_opt_out(tmp_path):
    from . import models

    model = models.cnn(tmp_path / "m.keras")
    env = {"DEPLOYKIT_BWRAP": str(tmp_path / "no-such-bwrap")}
    proc = run_cli("build", "--model", str(model), "--no-latency", "--quiet", "--out", str(tmp_path / "out"), env=env)
    assert proc.returncode == 4, proc.stderr[-1500:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("deploykit: error:")]
    assert len(lines) == 1 and "--trust-model" in lines[0] and "bubblewrap" in lines[0]
    assert not (tmp_path / "out").exists()

    trusted = run_cli("build", "--model", str(model), "--trust-model", "--quantize", "float32", "--no-latency",
                      "--quiet", "--json", "--out", str(tmp_path / "out"), env=env, timeout=300)
    assert trusted.returncode == 0, trusted.stderr[-1500:]
    doc = json.loads(trusted.stdout)
    assert doc["isolation"] == {"workers": "process per job", "sandbox": None, "trusted_model": True}


def test_the_build_process_never_imports_tensorflow(tmp_path):
    from . import models

    model = models.cnn(tmp_path / "m.keras")
    code = f"""
import sys, deploykit
doc = deploykit.build(model={str(model)!r}, out={str(tmp_path / 'out')!r}, quantize=("float32",), latency={{"enabled": False}})
assert doc["passed"] and doc["isolation"]["sandbox"] == "bubblewrap", doc["isolation"]
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tf_keras", "keras", "ai_edge_litert"))
print(len(heavy), heavy[:5])
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[0] == "0", proc.stdout


def test_workers_die_with_deploykit(tmp_path):
    """SIGKILL to the CLI (no chance to clean up) still ends its sandboxed workers."""
    import signal
    import time

    import psutil

    from . import models

    model = models.cnn(tmp_path / "m.keras")
    cli = subprocess.Popen([str(Path(sys.executable).with_name("deploykit")), "build", "--model", str(model),
                            "--no-latency", "--quiet", "--out", str(tmp_path / "out")],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    workers = []
    while time.time() < deadline and not workers:
        workers = [p for p in psutil.Process(cli.pid).children(recursive=True)
                   if "deploykit.worker" in " ".join(p.cmdline()) and "bwrap" not in p.name()]
        time.sleep(0.2)
    assert workers, "no worker started"
    cli.send_signal(signal.SIGKILL)
    cli.wait()
    gone, alive = psutil.wait_procs(workers, timeout=15)
    assert not alive, [p.cmdline()[:4] for p in alive]


def test_a_worker_past_its_memory_cap_is_killed_and_named(tmp_path):
    from deploykit.runner import run_child

    hog = "import sys, time; blocks = [bytearray(50 << 20) for _ in range(12)]; time.sleep(30)"
    cmd = sandbox.command([sys.executable, "-c", hog], scratch=tmp_path)
    result = run_child(cmd, {}, tmp_path, timeout=60, label="the converter", memory_mb=300)
    assert result == {"ok": False, "error": "the converter: ran out of memory (more than 300 MB resident; killed)"}


def test_a_crashing_worker_is_named_by_its_signal_through_bubblewrap(tmp_path):
    from deploykit.runner import run_child

    cmd = sandbox.command([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"],
                          scratch=tmp_path)
    result = run_child(cmd, {}, tmp_path, timeout=60, label="the converter")
    assert result == {"ok": False, "error": "the converter: runtime crashed (SIGSEGV)"}
