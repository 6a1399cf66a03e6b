"""Serving versions (issue #17): `--model-version`, `--model-base-path`, `--version-policy`.

A build into an existing TF Serving base path keeps its versions untouched (byte for byte), adds the
next version only once the whole build passed, and serves what the policy says: the container check
proves the previous version and the new one AVAILABLE side by side. Refusals (a taken version, a
linked version, an ambiguous name, a policy that would not serve the new version) happen before any
model work and write nothing. The unit tests need no TensorFlow; the builds use a plain tf.Module
SavedModel (no training) and skip latency.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pytest

import deploykit
from deploykit.config import make_config
from deploykit.digests import tree_sha256
from deploykit.errors import BadInputError, BudgetError, SecurityError
from deploykit.targets.serving import repo as serving_repo
from deploykit.targets.serving import versions as vers

from . import models
from .conftest import NO_LATENCY

NAME = "affine"


def snapshot(folder: Path) -> dict[str, str]:
    """Every entry under `folder` (links not followed): its kind and content digest."""
    found = {}
    for root, dirs, files in os.walk(folder, followlinks=False):
        for name in dirs + files:
            p = Path(root) / name
            rel = p.relative_to(folder).as_posix()
            if p.is_symlink():
                found[rel] = "link " + os.readlink(p)
            elif p.is_dir():
                found[rel] = "dir"
            else:
                found[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return found


def base_with(tmp_path: Path, *versions: int, saved: Path | None = None) -> Path:
    """A base path holding `versions` (copies of `saved`, or small fake folders) and entries that are
    not versions, which must be ignored and left alone."""
    import shutil

    base = tmp_path / "srv" / NAME
    base.mkdir(parents=True)
    for v in versions:
        if saved is not None:
            shutil.copytree(saved, base / str(v))
        else:
            (base / str(v)).mkdir()
            (base / str(v) / "saved_model.pb").write_bytes(b"version %d" % v)
    (base / "README").write_text("ops notes\n")
    (base / ".tmp-upload").mkdir()
    (base / "latest").symlink_to(str(max(versions)) if versions else "README")
    return base


# ---- no TensorFlow: settings, policy, the base path ---------------------------------------------------
def test_version_policy_parsed_written_and_refused():
    assert vers.parse_policy("latest 2").proto() == "latest { num_versions: 2 }"
    assert vers.parse_policy("all").proto() == "all {}"
    specific = vers.parse_policy("specific 3, 1,3")
    assert specific.text() == "specific 1,3" and specific.proto() == "specific { versions: 1 versions: 3 }"
    assert specific.serves([1, 2, 3, 4]) == [1, 3] and vers.parse_policy("latest 2").serves([4, 1, 9]) == [4, 9]
    config = serving_repo.models_config([NAME], policy=specific.proto())
    assert "    model_version_policy { specific { versions: 1 versions: 3 } }\n" in config
    for bad in ("latest", "latest 0", "latest 1 2", "newest 2", "specific", "specific x", "all 2", "specific -1"):
        with pytest.raises(BadInputError, match="--version-policy"):
            vers.parse_policy(bad)
    with pytest.raises(BadInputError, match="--version-policy 'latest 0'"):  # the [serving] table, via the settings check
        make_config({"serving": {"version_policy": "latest 0"}})
    for bad in (0, -3, 2**63):
        with pytest.raises(BadInputError, match="--model-version .*positive integer"):
            make_config({"serving": {"model_version": bad}})
    cfg = make_config({"serving": {"model_version": 7, "model_base_path": "/srv/m", "version_policy": "all"}})
    assert (cfg.serving.model_version, cfg.serving.model_base_path, cfg.serving.version_policy) == (7, "/srv/m", "all")


def test_base_path_versions_next_and_defaults(tmp_path):
    base = base_with(tmp_path, 1, 3)
    (base / "notes").mkdir()
    (base / "-").mkdir()
    (base / ("9" * 20)).mkdir()  # beyond int64: not a version to TF Serving (absl::SimpleAtoi fails)
    assert vers.existing_versions(base) == [1, 3]
    fresh = vers.plan(None, None, None)
    assert (fresh.version, fresh.policy.text(), fresh.kept, fresh.served) == (1, "latest 1", (), [1])
    beside = vers.plan(str(base), None, None)  # the next after the highest, and the previous one stays loaded
    assert (beside.version, beside.policy.text(), beside.kept, beside.served) == (4, "latest 2", (1, 3), [3, 4])
    assert beside.facts() == {"model_version": 4, "version_policy": "latest 2", "versions_kept": [1, 3],
                              "versions_served": [3, 4], "model_base_path": str(base)}
    import jsonschema  # what the manifest schema says targets.serving holds

    schema = json.loads((Path(deploykit.__file__).parent / "schema" / "manifest.schema.json").read_text())
    check = jsonschema.validators.validator_for(schema)({**schema["$defs"]["serving_versions"], "$defs": schema["$defs"]})
    for rollout in (fresh, beside, vers.plan(str(base), 9, "specific 1,9")):
        check.validate(rollout.facts())
    assert not check.is_valid({**beside.facts(), "version_policy": "latest 0"})
    assert vers.plan(str(base), 2, "all").served == [1, 2, 3]
    assert vers.plan(str(base), 9, "specific 1,9").served == [1, 9]


def test_refusals_name_the_folder(tmp_path):
    base = base_with(tmp_path, 1, 2)
    with pytest.raises(BadInputError, match=rf"--model-version 2: {base}/2 exists; .*next free version is 3"):
        vers.plan(str(base), 2, None)
    high = base_with(tmp_path / "high", 4, 5)
    for policy in (None, "latest 2"):  # the default too: a version below the two highest would not be served
        with pytest.raises(BadInputError, match="latest 2: it would serve version.s. 4, 5, not the new version 3"):
            vers.plan(str(high), 3, policy)
    with pytest.raises(BadInputError, match="version.s. 7 would not exist"):
        vers.plan(str(base), None, "specific 3,7")
    with pytest.raises(BadInputError, match="no such folder"):
        vers.plan(str(tmp_path / "missing"), None, None)
    for odd in ("007", "+4", "0", " 6"):
        (base / odd).mkdir()
        with pytest.raises(BadInputError, match=re.escape(f"TF Serving reads '{odd}' as version")):
            vers.existing_versions(base)
        (base / odd).rmdir()
    (base / "4").write_text("not a folder")
    with pytest.raises(BadInputError, match="version 4 is not a folder"):
        vers.existing_versions(base)
    (base / "4").unlink()
    (base / "4").symlink_to(tmp_path)  # a version that is a link: exit 5, like every link refusal
    with pytest.raises(SecurityError, match="version 4 is a symbolic link") as caught:
        vers.existing_versions(base)
    assert caught.value.exit_code == 5


def test_copy_version_refuses_links_and_never_replaces(tmp_path):
    src = tmp_path / "src"
    (src / "variables").mkdir(parents=True)
    (src / "saved_model.pb").write_bytes(b"pb")
    (src / "variables" / "secret").symlink_to("/etc/passwd")
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(SecurityError, match="'variables/secret' .* is a symbolic link"):
        vers.copy_version(src, dest, 1, "--model-base-path")
    (src / "variables" / "secret").unlink()
    (dest / "1").mkdir()
    (dest / "1" / "mine").write_text("the user's")
    with pytest.raises(FileExistsError):
        vers.copy_version(src, dest, 1, "--model-base-path")
    assert snapshot(dest) == {"1": "dir", "1/mine": hashlib.sha256(b"the user's").hexdigest()}  # no leftovers
    with pytest.raises(BadInputError, match="differs from the validated version"):
        vers.copy_version(src, dest, 2, "--model-base-path", expect_sha256="0" * 64)
    assert sorted(os.listdir(dest)) == ["1"]
    assert tree_sha256(vers.copy_version(src, dest, 2, "--model-base-path", tree_sha256(src))) == tree_sha256(src)


# ---- builds -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def saved(tmp_path_factory, tf):
    return models.module_saved_model(tmp_path_factory.mktemp("affine") / NAME)


def test_taken_or_linked_version_is_refused_before_any_model_work(tmp_path, saved):
    base = base_with(tmp_path, 1, 2)
    before = snapshot(base)
    out = tmp_path / "out"
    kw = dict(targets=("serving",), out=str(out), model_base_path=str(base), container=False, **NO_LATENCY)
    with pytest.raises(BadInputError, match=f"--model-version 1: {base}/1 exists") as caught:
        deploykit.build(str(saved), model_version=1, **kw)
    assert caught.value.exit_code == 2
    (base / "3").symlink_to(base / "1")
    with pytest.raises(SecurityError, match="version 3 is a symbolic link") as caught:
        deploykit.build(str(saved), **kw)
    assert caught.value.exit_code == 5
    (base / "3").unlink()
    with pytest.raises(BadInputError, match="one lies inside the other"):  # the build replaces --out
        deploykit.build(str(saved), **{**kw, "out": str(base / "build")})
    assert snapshot(base) == before and not out.exists() and not (tmp_path / "out.failed").exists()


def test_failed_build_adds_nothing_to_the_base_path(tmp_path, saved):
    """A build that fails its budget (exit 3) is kept in OUT.failed with the policy written into its
    models.config, and the user's base path is byte-identical: the version lands only after a pass."""
    base = base_with(tmp_path, 1, 2)
    before = snapshot(base)
    out = tmp_path / "out"
    with pytest.raises(BudgetError) as caught:
        deploykit.build(str(saved), targets=("serving",), out=str(out), model_base_path=str(base), container=False,
                        version_policy="specific 1,3", budgets={"serving": {"float32": {"max_abs_rel": -1.0}}},
                        **NO_LATENCY)
    assert caught.value.exit_code == 3
    assert snapshot(base) == before, "a failed build must not add a version"
    assert not out.exists()
    failed = tmp_path / "out.failed"
    doc = caught.value.manifest
    assert doc["passed"] is False
    assert doc["targets"]["serving"] == {**doc["targets"]["serving"], "model_version": 3, "versions_kept": [1, 2],
                                         "version_policy": "specific 1,3", "versions_served": [1, 3]}
    config = (failed / "serving" / "models.config").read_text()
    assert "model_version_policy { specific { versions: 1 versions: 3 } }" in config
    assert sorted(os.listdir(failed / "serving" / "models" / NAME)) == ["1", "3"]  # the served versions only
    assert snapshot(failed / "serving" / "models" / NAME / "1") == snapshot(base / "1")


@pytest.mark.slow
@pytest.mark.docker
def test_version_added_beside_the_previous_one_both_served(tmp_path, saved):
    """The one container build: the base path holds version 1 (and entries that are not versions);
    the build adds version 2 (the default next), policy latest 2, and the container serves both."""
    from deploykit.targets.serving import container as ctr

    from .serving_standin import ensure_image

    base = base_with(tmp_path, 1, saved=saved)
    before = snapshot(base)
    out = tmp_path / "out"
    doc = deploykit.build(str(saved), targets=("serving",), out=str(out), model_base_path=str(base),
                          base_image=ensure_image(), **NO_LATENCY)
    a = doc["artifacts"][0]
    try:
        assert doc["passed"] and a["passed"], a["failures"]
        facts = {"model_version": 2, "version_policy": "latest 2", "versions_kept": [1], "versions_served": [1, 2],
                 "model_base_path": str(base)}
        assert {k: doc["targets"]["serving"][k] for k in facts} == facts
        assert {k: a["details"][k] for k in facts} == facts
        assert a["details"]["container"]["versions_available"] == [1, 2]  # REST status: both AVAILABLE
        assert set(a["parity"]["backends"]) == {"in-process", "rest-row", "rest-columnar", "grpc", "grpc-example"}
        # the user's versions and other entries untouched, byte for byte; version 2 added, as validated
        after = snapshot(base)
        assert {k: v for k, v in after.items() if not k.startswith("2")} == before
        assert tree_sha256(base / "2") == a["details"]["model_sha256"]
        assert sorted(os.listdir(base)) == [".tmp-upload", "1", "2", "README", "latest"]  # no staging leftovers
        repo = out / "serving"  # a complete repository: the image's, and what the server ends up with
        assert sorted(os.listdir(repo / "models" / NAME)) == ["1", "2"]
        assert snapshot(repo / "models" / NAME / "1") == snapshot(base / "1")
        assert snapshot(repo / "models" / NAME / "2") == snapshot(base / "2")
        assert "model_version_policy { latest { num_versions: 2 } }" in (repo / "models.config").read_text()
        assert 'org.opencontainers.image.version="2"' in (repo / "Dockerfile").read_text()
    finally:
        c = ctr.client()
        for tag in c.images.get(a["details"]["image"]["id"]).tags:
            c.images.remove(tag)
        assert [n for n in ctr.leftover_containers(c) if f"-serving-{NAME}-" in n] == []  # ours (others may be running)


def test_base_path_changed_during_the_build_is_refused(tmp_path):
    """Planned before any model work (check_runtime), re-read when the version is placed (after_convert):
    a version that appeared in between stops the build, nothing placed."""
    from deploykit.targets.serving.settings import ServingSettings
    from deploykit.targets.serving.target import ServingTarget

    base = base_with(tmp_path, 1)
    target = ServingTarget(ServingSettings(model_base_path=str(base), container=False))
    target.check_runtime()
    (base / "2").mkdir()  # another rollout landed meanwhile
    root = tmp_path / "serving"
    with pytest.raises(BadInputError, match=r"its versions changed during the build \(1 -> 1, 2\)"):
        target._place_version(root, NAME, "model.keras")
    assert not root.exists()


def test_container_check_requires_exactly_the_served_versions_available():
    """The REST status check against a server that ignored the policy (only the newest version loaded,
    as a `latest 1` server would): the artifact fails, naming both lists."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer
    from types import SimpleNamespace

    from deploykit.targets.serving.target import ServingTarget

    statuses = [{"version": "2", "state": "AVAILABLE"}, {"version": "1", "state": "END"}]

    class Status(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            raw = json.dumps({"model_version_status": statuses}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Status)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        running = SimpleNamespace(rest_url=f"http://127.0.0.1:{server.server_port}")
        details = {"model_name": NAME, "model_version": 2, "version_policy": "latest 2", "versions_served": [1, 2]}
        available, problems = ServingTarget._served_versions(None, running, details)
        assert available == [2]
        assert problems == ["REST status: versions AVAILABLE [2], the version policy (latest 2) serves [1, 2]"]
        statuses[1]["state"] = "AVAILABLE"
        assert ServingTarget._served_versions(None, running, details) == ([1, 2], [])
    finally:
        server.shutdown()
        server.server_close()
