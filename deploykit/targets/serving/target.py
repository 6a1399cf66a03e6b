"""TF Serving target: a model repository and a Docker image, validated in process and through the container.

Artifact: the folder `serving/` (see `repo.py` for its layout: models/NAME/VERSION/ SavedModel
with a warm-up file, models.config, batching parameters, Dockerfile). The version's SavedModel is
model work (the convert worker, sandboxed); numbering it and placing it among the versions of
`--model-base-path` is host work, in the `deploykit` process (`after_convert`, `versions.py`): the
sandbox never sees the user's repository, and the new version reaches it only once the whole build
passed (`before_commit`). The SavedModel has
`serving_default` over tensors named after the model's inputs and, when every input has a fixed
numeric shape, `tf_example`: one string tensor `examples` of serialized tf.Example protos parsed with
a feature spec derived from the model's inputs (the Estimator / TF Ranking export shape).

Validation (every check is a backend of the runtime, each judged against the reference outputs):
  1. in process (`in-process`): load the SavedModel from the repository, call `serving_default` on
     the parity data (and check `tf_example` agrees with it);
  2. in the container (unless `--no-container`): the image built through the Docker Engine API,
     run hardened (non-root, read-only root filesystem, no capabilities, no-new-privileges),
     awaited until AVAILABLE, then REST `:predict` in the row (`rest-row`) and the columnar
     (`rest-columnar`) format, and gRPC (`grpc.py`, in a worker: the serving protos import
     TensorFlow): `Predict` on `serving_default` (`grpc`) and, with the `tf_example` signature,
     `Classify`/`Regress` when the signature's method is classify/regress (`grpc-classify`,
     `grpc-regress`), else `Predict` on serialized tf.Examples (`grpc-example`). Before any of
     it counts, gRPC `GetModelStatus` (the version AVAILABLE) and `GetModelMetadata` and REST
     `/metadata` must describe the manifest's contract (`metadata.py`: signature names, methods,
     input/output names, dtypes, shapes); a difference fails the artifact, naming each one.
Latency (the latency phase, one artifact at a time): a container of its own, p50/p90/p99 of
sequential single-row REST requests, then the load stage (`load.py`): 1, 4, 16 and 64 concurrent
clients over REST and over gRPC, in that container (batching off) and in a second one started with
`--enable_batching` and the repository's `batching_parameters.txt` (batching on); a level with
errors or over a `load_p50_ms`/`load_p99_ms` budget fails the artifact (`validation/load.py`).
In process with `--no-container` (no load stage). Containers are always stopped and removed. `--push REGISTRY/REPO:TAG` pushes the image after every check passed
(`after_validation`); `deploykit publish` pushes it through `publish_artifact`.

The base image is `--base-image`, else DEPLOYKIT_SERVING_BASE_IMAGE, else tensorflow/serving:2.19.0.
The tf.Example feature spec is derived from the model's inputs (FixedLenFeature per input); a
user-given spec (e.g. the fit stage's dataset spec) is not wired in yet.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Mapping

import numpy as np

from deploykit.errors import BadInputError, DeployKitError, MissingRuntimeError, OutputUnwritableError
from deploykit.targets.base import Artifact, RunRequest, Target
from deploykit.targets.serving import container as ctr
from deploykit.targets.serving import load as load
from deploykit.targets.serving import repo as repo
from deploykit.targets.serving import settings as serving_settings
from deploykit.targets.serving import versions as vers
from deploykit.version import __version__

UNNUMBERED = ".version-unnumbered"  # the convert worker's version folder: not an integer, so no server loads it
EXAMPLES_SIGNATURE = "tf_example"
CHECKS = ("in-process", "rest-row", "rest-columnar")  # then the gRPC backends (grpc.py); latency times REST


class ServingTarget(Target):
    name = "serving"
    summary = "TF Serving model repository + Docker image, validated in process and through REST and gRPC in the container"
    runtime = "tf-serving"
    variants = ("float32",)
    settings_class = serving_settings.ServingSettings
    top_level_settings = ("base_image", "push", "container")  # build(base_image=...), as before [serving]
    options = serving_settings.OPTIONS
    publish_note_when_absent = "no serving artifact in this build: no image pushed"
    # The SavedModel is the model's own graph: in process it matches exactly; REST carries numbers as
    # JSON decimal text, which keeps float32 values to within a few ulps.
    default_budgets = {"float32": {"max_abs_rel": 1e-5}}

    def __init__(self, settings=None) -> None:
        super().__init__(settings)
        self._warmup: list[bytes] | None = None
        self._client = None
        self._rollout: vers.Rollout | None = None
        base = self.settings.base_image or os.environ.get("DEPLOYKIT_SERVING_BASE_IMAGE") or ctr.DEFAULT_BASE_IMAGE
        self._base_image = ctr.check_image_ref(base, "--base-image")

    @classmethod
    def check_settings(cls, settings) -> None:
        serving_settings.check(settings)

    # ---- runtime check ------------------------------------------------------------------------
    def check_runtime(self, config=None) -> None:
        self._rollout = self._plan_rollout()  # a taken version, a linked version, a bad policy: before any model work
        if self._rollout.base is not None and config is not None:
            out, base = Path(config.out).resolve(), self._rollout.base.resolve()
            if base == out or base.is_relative_to(out) or out.is_relative_to(base):
                raise BadInputError(f"--model-base-path {self._rollout.base} and --out {config.out}: one lies inside the "
                                    "other, and the build replaces --out; point --model-base-path at the server's "
                                    "repository, outside the output")
        if self.settings.container:
            self._client = ctr.client()  # MissingRuntimeError (exit 4) naming what to run

    def _plan_rollout(self) -> vers.Rollout:
        s = self.settings
        return vers.plan(s.model_base_path, s.model_version, s.version_policy)

    # ---- preflight: the SavedModel with its serving signatures -------------------------------
    def prepare(self, model, saved_model, data, config, work) -> dict:
        from deploykit.tfenv import tensorflow

        tf = tensorflow()
        self._model_name = self.settings.model_name or repo.model_name(model.source.location)
        self._source = model.source.location
        self._warmup = repo.warmup_requests(self._model_name, data)
        extra = {}
        spec = feature_spec(model.contract)
        if spec is not None:
            extra[EXAMPLES_SIGNATURE] = examples_function(tf, model.call, model.contract, spec)
        self._saved_model = work / "serving_saved_model"
        model.export_saved_model(self._saved_model, extra_signatures=extra)  # serving_default + tf_example
        signatures = ["serving_default", *extra]
        self.plan = {
            "model_name": self._model_name, "signatures": sorted(signatures),
            "inputs": model.contract.input_names, "base_image": self._base_image,
            "container_check": bool(self.settings.container),
            # the latency phase's load stage, recorded so that `deploykit validate` repeats it
            "load_plan": load_plan(self.settings).to_json(),
            # what the running server's metadata must describe (checked over gRPC and REST)
            "contract": model.contract.to_json(),
        }
        return {k: v for k, v in self.plan.items() if k != "contract"}  # the manifest has it at the top

    def converted_in_preflight(self, variant: str) -> bool:
        return True  # the repository is the preflight's SavedModel, its warm-up records and configs

    def check_in_preflight(self, artifact: Artifact, inputs: Path, latency, work: Path) -> dict:
        """The in-process check (and, without a container, its latency) in the intake worker, which
        already runs TensorFlow: the repository's version loaded from disk and called, as in a worker."""
        from deploykit.arrays import read_npz, save_npz

        details = artifact.details
        version_dir = Path(artifact.path) / "models" / details["model_name"] / UNNUMBERED  # numbered on the host
        rows = read_npz(inputs, "parity inputs")
        work.mkdir(parents=True, exist_ok=True)
        loaded = load_version(version_dir)  # once for both (a load is seconds for an applications network)
        checked = {"outputs": {"in-process": str(work / "in-process.npz")}}
        if latency is not None and not self.settings.container:  # with a container, latency is over REST
            # first, so that its first call is the model's first inference
            checked["latency"] = {**in_process_latency(version_dir, rows, latency, loaded), "measured_in": "the load step"}
        save_npz(work / "in-process.npz", in_process(version_dir, rows, loaded=loaded,
                                                     check_examples=EXAMPLES_SIGNATURE in details["signatures"]))
        return checked

    def plan_state(self) -> dict:
        return {"plan": dict(self.plan), "saved_model": str(self._saved_model), "source": self._source}

    def resume(self, state, work, model) -> None:
        super().resume(state, work, model)
        self._saved_model, self._source = Path(state["saved_model"]), state["source"]
        self._model_name = self.plan["model_name"]

    # ---- conversion: the version (worker), then the repository around it and the image (host) ----------
    def convert(self, variant: str, dest: Path, calibration: Mapping, config) -> Artifact:
        started = time.perf_counter()
        root = dest  # staging/serving
        if self._warmup is None:  # in a convert worker: the same records prepare made, from the same rows
            self._warmup = repo.warmup_requests(self._model_name, calibration)
        repo.write_version(root / "models" / self._model_name, UNNUMBERED, self._saved_model, self._warmup)
        (root / "batching_parameters.txt").write_text(repo.batching_parameters())
        details = {**self.plan, "warmup_requests": len(self._warmup), "_source": self._source,  # for the Dockerfile
                   "convert_seconds": round(time.perf_counter() - started, 3)}
        return Artifact(self.name, variant, root, details)

    def after_convert(self, artifact: Artifact) -> Artifact:
        """In the build process: number the version and place it among the kept versions the policy
        serves (read from --model-base-path, which the sandbox never sees), write models.config and
        the Dockerfile, then build the image (the Docker daemon is not in the sandbox either)."""
        started = time.perf_counter()
        details = dict(artifact.details)
        details.update(self._place_version(Path(artifact.path), details["model_name"], details.pop("_source", "")))
        if self.settings.container:
            details["image"] = self._build_image(Path(artifact.path), details["model_name"], details["model_sha256"])
        details["convert_seconds"] = round(details["convert_seconds"] + time.perf_counter() - started, 3)
        return dataclasses.replace(artifact, details=details)

    def _place_version(self, root: Path, model_name: str, source: str) -> dict:
        from deploykit.digests import tree_sha256

        rollout = self._plan_rollout()  # the base path now: it must still be what the build was planned on
        if self._rollout is not None and rollout != self._rollout:
            raise BadInputError(f"--model-base-path {rollout.base}: its versions changed during the build "
                                f"({', '.join(map(str, self._rollout.kept)) or 'none'} -> "
                                f"{', '.join(map(str, rollout.kept)) or 'none'}); nothing was added, build again")
        self._rollout = rollout
        model_dir = root / "models" / model_name
        version_dir = model_dir / str(rollout.version)
        os.rename(model_dir / UNNUMBERED, version_dir)
        for kept in rollout.served:  # the previous versions the server keeps loaded, into the image beside it
            if kept != rollout.version:
                try:
                    vers.copy_version(rollout.base / str(kept), model_dir, kept, "--model-base-path")
                except OSError as exc:  # unreadable files (shutil.Error is an OSError too)
                    raise BadInputError(f"--model-base-path: cannot copy version {kept} from {rollout.base} into "
                                        f"the build ({str(exc)[:200]}); nothing was added") from None
        (root / "models.config").write_text(repo.models_config([model_name], policy=rollout.policy.proto()))
        model_sha = tree_sha256(version_dir)
        values = {
            "base_image": self._base_image, "model_name": model_name, "model_version": rollout.version,
            "versions": ", ".join(map(str, rollout.served)),
            "model_sha256": model_sha, "source": source, "revision": _revision(),
            "deploykit_version": __version__, "user": ctr.SERVING_USER, "extra_flags": "",
        }
        (root / "Dockerfile").write_text(ctr.render_dockerfile(**values))
        return {**rollout.facts(), "model_sha256": model_sha, "models_config": "models.config", "dockerfile": "Dockerfile"}

    def _build_image(self, root: Path, model_name: str, model_sha: str) -> dict:
        c = self._client = self._client or ctr.client()
        _ensure_base(c, self._base_image)
        tag = f"deploykit-serving/{image_component(model_name)}:{model_sha[:12]}"
        try:
            built = ctr.build_image(c, root, tag, {"org.deploykit.model.sha256": model_sha})
        except ctr.ContainerError as exc:
            raise DeployKitError(str(exc)) from None
        return {**built, "base_image": self._base_image, "base_digest": ctr.base_digest(c, self._base_image),
                "repo_digest": None, "pushed": None}

    # ---- validation -----------------------------------------------------------------------------
    def run(self, request: RunRequest, work: Path) -> dict:
        artifact = request.artifact
        with np.load(request.inputs, allow_pickle=False) as npz:
            inputs = {k: npz[k] for k in npz.files}
        try:
            if request.mode == "parity":
                return self._parity(artifact, inputs, request)
            return self._latency_run(artifact, inputs, request)
        except (ctr.ContainerError, DeployKitError, OSError) as exc:
            return {"ok": False, "error": f"serving/{artifact.variant}: {exc}"}
        except Exception as exc:  # noqa: BLE001 - Docker API and HTTP errors: a runtime failure of this artifact
            return {"ok": False, "error": f"serving/{artifact.variant}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}"}

    def _parity(self, artifact: Artifact, inputs: dict, request: RunRequest) -> dict:
        """Every check's outputs, one .npz each: in process, then REST in both formats, then gRPC."""
        details = artifact.details
        version_dir = Path(artifact.path) / "models" / details["model_name"] / str(details["model_version"])
        done = (artifact.checked.get("outputs") or {}).get("in-process")  # by the intake worker
        if done is not None:
            with np.load(done, allow_pickle=False) as npz:
                outputs = {"in-process": {k: npz[k] for k in npz.files}}
        else:
            outputs = {"in-process": self._in_worker("in_process_job", version_dir, request,
                                                     check_examples=EXAMPLES_SIGNATURE in details["signatures"])}
        names = sorted(outputs["in-process"])
        if details.get("image"):
            with self._container(artifact) as (running, client, load_ms):
                outputs["rest-row"] = client.predict_all(inputs, names, "row")
                outputs["rest-columnar"] = client.predict_all(inputs, names, "columnar")
                available, problems = self._served_versions(running, details)
                problems += self._rest_metadata_problems(running, details)
                answer = self._grpc_checks(running, request, details)
                problems += answer["problems"]
                if problems:
                    raise DeployKitError("the running server does not describe the manifest's contract: "
                                         + "; ".join(problems))
                for backend in answer["backends"]:
                    with np.load(answer["outputs"][backend], allow_pickle=False) as npz:
                        outputs[backend] = {k: npz[k] for k in npz.files}
                if isinstance(details, dict):
                    details["container"] = {"network": running.network, "ready_ms": round(load_ms, 1),
                                            "tf_example_method": answer.get("example_method"),
                                            "versions_available": available,
                                            **_user_and_health(running)}
        for check, out in outputs.items():
            np.savez(request.outputs_for(check), **{k: np.asarray(v, dtype=np.float32) for k, v in out.items()})
        return {"ok": True, "rows": len(next(iter(inputs.values()))), "backends": list(outputs),
                "runtime": f"tf-serving[{','.join(outputs)}]", "runtime_version": self._runtime_version(details)}

    def _served_versions(self, running, details) -> tuple[list[int], list[str]]:
        """REST GET /v1/models/NAME: exactly the versions the policy serves are AVAILABLE."""
        import requests

        url = f"{running.rest_url}/v1/models/{details['model_name']}"
        r = requests.get(url, timeout=30)
        if r.status_code != 200:
            return [], [f"REST status: GET {url}: HTTP {r.status_code}: {r.text[:300]}"]
        statuses = r.json().get("model_version_status") or []
        available = sorted(int(s["version"]) for s in statuses if s.get("state") == "AVAILABLE")
        expected = _served(details)
        if available != expected:
            return available, [f"REST status: versions AVAILABLE {available}, the version policy "
                               f"({details.get('version_policy', 'latest 1')}) serves {expected}"]
        return available, []

    def _rest_metadata_problems(self, running, details) -> list[str]:
        """REST GET /v1/models/NAME/versions/N/metadata against the manifest's contract."""
        import requests

        from deploykit.targets.serving import metadata as md

        where = "REST /metadata"
        url = f"{running.rest_url}/v1/models/{details['model_name']}/versions/{details['model_version']}/metadata"
        r = requests.get(url, timeout=30)
        if r.status_code != 200:
            return [f"{where}: GET {url}: HTTP {r.status_code}: {r.text[:300]}"]
        try:
            spec, served = md.from_rest(r.json())
        except ValueError as exc:
            return [f"{where}: {exc}"]
        found = md.spec_problems(spec, details["model_name"], details["model_version"], where)
        if details.get("contract"):
            found += md.problems(served, md.expected(details["contract"], details["signatures"], EXAMPLES_SIGNATURE), where)
        return found

    def _grpc_checks(self, running, request: RunRequest, details) -> dict:
        """The gRPC half of the container check, in a worker (grpc.container_job). Not sandboxed: it must
        reach the container on 127.0.0.1, and it runs no model code (it only parses the server's answers)."""
        from deploykit import worker

        scratch = request.outputs.with_name(f"{request.outputs.name}.grpc").resolve()
        job = {"function": "deploykit.targets.serving.grpc:container_job", "address": f"127.0.0.1:{running.grpc_port}",
               "model": details["model_name"], "version": details["model_version"], "contract": details.get("contract"),
               "signatures": list(details["signatures"]), "inputs": str(Path(request.inputs).resolve()),
               "work": str(scratch)}
        answer = worker.call("call", job, scratch=scratch, sandboxed=False, timeout=600,
                             label=f"serving/{request.artifact.variant} gRPC")
        for backend in answer.get("backends", []):
            answer["outputs"][backend] = worker.inside(scratch, answer["outputs"][backend])
        return answer

    @contextlib.contextmanager
    def _container(self, artifact: Artifact, batching: bool = False):
        from deploykit.targets.serving.rest import RestClient

        details = artifact.details
        c = self._client or ctr.client()
        model = details["model_name"]
        flags, label = (repo.BATCHING_FLAGS, f"serving-{model}-batching") if batching else (None, f"serving-{model}")
        with ctr.serving(c, details["image"]["id"], model, label=label, versions=_served(details),
                         flags=flags) as running:
            load_ms = (time.perf_counter() - running.started) * 1000
            yield running, RestClient(running.rest_url, model, version=details["model_version"]), load_ms

    def _in_worker(self, function: str, version_dir: Path, request: RunRequest, **extra):
        """Load the repository's SavedModel in a worker (sandboxed unless the model is trusted)."""
        from deploykit import worker

        scratch = request.outputs.with_name(f"{request.outputs.name}.{function}").resolve()
        version_dir = version_dir.resolve()
        job = {"function": f"{__name__}:{function}", "version_dir": str(version_dir), "inputs": str(Path(request.inputs).resolve()),
               "work": str(scratch), "latency": dataclasses.asdict(request.latency), **extra}
        result = worker.call("call", job, scratch=scratch, sandboxed=self.sandboxed, reads=[version_dir, request.inputs],
                             timeout=600 + request.latency.max_seconds * 4, label=f"serving/{request.artifact.variant}")
        if function == "in_process_job":
            with np.load(worker.inside(scratch, result["outputs"]), allow_pickle=False) as npz:
                return {k: npz[k] for k in npz.files}
        return result

    def _runtime_version(self, details) -> str:
        from importlib.metadata import version

        image = details.get("image") or {}
        server = f"image {image['base_image']}" if image else "no container"
        return f"{server}; in-process tensorflow {version('tensorflow')}"

    def _latency_run(self, artifact: Artifact, inputs: dict, request: RunRequest) -> dict:
        """Through the container when there is one (sequential REST, then the load stage), else in process."""
        from deploykit.targets.serving.rest import sequential
        from deploykit.validation.latency import Sampling

        details = artifact.details
        if not details.get("image"):  # --no-container, or a build without the image
            if artifact.checked.get("latency"):  # measured by the intake worker
                return artifact.checked["latency"]
            version_dir = Path(artifact.path) / "models" / details["model_name"] / str(details["model_version"])
            return self._in_worker("in_process_latency_job", version_dir, request)
        lat = request.latency
        # the build's plan (so `deploykit validate` repeats it), else this target's settings
        plan = load.Plan.from_json(details["load_plan"]) if details.get("load_plan") else load_plan(self.settings)
        model, version = details["model_name"], details["model_version"]
        rows = load.single_rows(inputs)
        levels: list[dict] = []
        with self._container(artifact) as (running, client, load_ms):
            timings, first_ms, stopped = sequential(client, inputs, lat.warmup, Sampling.of(lat))
            if plan.levels:  # the answers every loaded request is checked against: this server's, one row at a time
                expected = load.expected_outputs(running.rest_url, model, version, rows)
                if "off" in plan.batching:
                    levels += load.measure(plan, "off", running.rest_url, f"127.0.0.1:{running.grpc_port}", model,
                                           version, rows, expected)
            memory = _memory_mb(running.container)
        if plan.levels and "on" in plan.batching:  # server-side batching: a container started with it
            with self._container(artifact, batching=True) as (running, _, _):
                levels += load.measure(plan, "on", running.rest_url, f"127.0.0.1:{running.grpc_port}", model,
                                       version, rows, expected)
        return {"ok": True, "timings_ms": timings, "stopped": stopped, "warmup": lat.warmup, "load_ms": load_ms,
                "first_inference_ms": first_ms, "peak_rss_mb": memory, "threads": None,
                "runtime": _container_runtime(details),  # parity's name; timed over REST (the load also over gRPC)
                "runtime_version": self._runtime_version(details),
                "load": {"plan": {**plan.to_json(), "rows": len(rows), "tolerance": load.TOLERANCE,
                                  "network": running.network},
                         "levels": levels} if plan.levels else None}

    # ---- hooks after validation ------------------------------------------------------------------
    def after_validation(self, records, rep) -> dict | None:
        mine = [r for r in records if r.target == self.name]
        for r in mine:  # each check's worst error, beside the conversion facts
            if isinstance(r.artifact.details, dict) and r.parity is not None and r.parity.backends:
                r.artifact.details["checks"] = {name: {"max_abs_rel": max((m.get("max_abs_rel", 0.0) for m in b.outputs.values()), default=None)}
                                                for name, b in r.parity.backends.items()}
        facts = self._rollout.facts() if self._rollout is not None else None  # targets.serving in the manifest
        if not self.settings.push or not mine or not all(r.passed for r in mine):
            return facts  # --push publishes only when every check passed
        for r in mine:
            image = r.artifact.details.get("image")
            if not image:
                raise DeployKitError("--push needs the container image: drop --no-container")
            repo_name, tag = ctr.split_tag(self.settings.push)
            self._client.images.get(image["id"]).tag(repo_name, tag)
            try:
                digest = ctr.push(self._client, self.settings.push)
            except ctr.ContainerError as exc:
                raise MissingRuntimeError(f"--push {self.settings.push}: {exc}") from None
            image.update(pushed=self.settings.push, repo_digest=f"{repo_name}@{digest}")
        return facts

    def before_commit(self, records, rep) -> None:
        """The build passed: add the validated version to --model-base-path (copied from the build,
        staged under a non-integer name, renamed into place without replacing anything)."""
        rollout = self._rollout
        mine = [r for r in records if r.target == self.name and r.artifact.path is not None and not r.rejected]
        if rollout is None or rollout.base is None or not mine:
            return
        details = mine[0].artifact.details
        built = Path(mine[0].artifact.path) / "models" / details["model_name"] / str(rollout.version)
        target = rollout.base / str(rollout.version)
        try:
            vers.copy_version(built, rollout.base, rollout.version, "--model-base-path", details["model_sha256"])
        except FileExistsError:
            raise BadInputError(f"--model-base-path: {target} appeared during the build (another rollout?); it was "
                                "left as it is and nothing was added; build again for the next version") from None
        except OSError as exc:
            raise OutputUnwritableError(f"--model-base-path {rollout.base}: cannot add version {rollout.version} "
                                        f"({exc.strerror or exc}); nothing was added, the output was not written") from None
        rep.info(f"serving: added version {rollout.version} to {rollout.base} (kept: "
                 f"{', '.join(map(str, rollout.kept)) or 'none'}; {rollout.policy.text()} serves "
                 f"{', '.join(map(str, rollout.served))})")

    # ---- deploykit publish: the image goes beside the OCI artifacts --------------------------------
    @classmethod
    def remote_conflicts(cls, entry, destination) -> list[str] | None:
        image_id = _image_id(entry)  # an image's config digest is its image id
        reference = destination.reference(destination.tag_for(cls.name))
        previous = destination.remote_manifest(reference) if image_id else None
        if previous is not None and (previous.get("config") or {}).get("digest") != image_id:
            return [reference]
        return []

    @classmethod
    def publish_artifact(cls, entry, destination, notes) -> dict | None:
        """Push the image as TAG-serving, then pull it back by digest and compare ids."""
        key = entry.key
        image = entry.details.get("image")  # {"tag", "id", ...}
        if isinstance(image, dict):
            image = image.get("id") or image.get("tag")
        if not image:
            notes.append(f"{key}: the manifest names no image (details.image); skipped")
            return {"artifact": key, "skipped": True}
        try:
            import docker

            client = docker.from_env()
            client.ping()
        except Exception as exc:  # noqa: BLE001 - docker raises several unrelated types when absent
            raise MissingRuntimeError(f"pushing the serving image needs a Docker daemon ({exc.__class__.__name__}: {exc})") from None
        try:
            local = client.images.get(image)
        except docker.errors.ImageNotFound:
            raise MissingRuntimeError(f"{key}: image {image} is not in this Docker daemon "
                                      "(publish on the machine that built it)") from None
        repository, tag = f"{destination.host}/{destination.repo}", destination.tag_for(cls.name)
        local.tag(repository, tag)
        try:
            digest = ctr.push(client, f"{repository}:{tag}", auth=destination.auth())
        except ctr.ContainerError as exc:
            raise MissingRuntimeError(f"{repository}:{tag}: {exc}") from None
        by_digest = f"{repository}@{digest}"
        client.images.pull(by_digest, auth_config=destination.auth())
        if client.images.get(by_digest).id != local.id:
            raise MissingRuntimeError(f"{by_digest}: pulled image differs from the built one ({local.id})")
        return {"artifact": key, "reference": by_digest, "image_id": local.id}


def _served(details) -> list[int]:
    """The versions the server must have AVAILABLE (a manifest from before versions: the one version)."""
    return list(details.get("versions_served") or [details["model_version"]])


def _container_runtime(details) -> str:
    """The runtime name of a container-checked artifact: every backend its parity check runs, as
    `_parity` names them (the latency record carries the same name)."""
    from deploykit.targets.serving.metadata import example_backend

    backends = [*CHECKS, "grpc"]
    if EXAMPLES_SIGNATURE in details["signatures"]:
        method = (details.get("container") or {}).get("tf_example_method")
        backends.append(example_backend(method, details["contract"]) if method and details.get("contract") else "grpc-example")
    return f"tf-serving[{','.join(backends)}]"


def load_plan(settings) -> load.Plan:
    """The load stage these settings ask for (`load_levels = []` or `0`: none)."""
    levels = tuple(n for n in settings.load_levels if n)
    return load.Plan(levels, settings.load_seconds, settings.load_requests, tuple(settings.load_apis),
                     tuple(settings.load_batching))


def _image_id(entry) -> str | None:
    image = entry.details.get("image")
    return image.get("id") if isinstance(image, dict) else None


# ---- helpers ------------------------------------------------------------------------------------
def feature_spec(contract) -> dict | None:
    """name -> (sample shape, dtype) for tf.Example parsing, or None if some input cannot be parsed."""
    spec = {}
    for t in contract.inputs:
        shape = tuple(t.sample_shape)
        if any(d is None for d in shape) or not (t.dtype.startswith("float") or t.dtype.startswith("int")):
            return None
        spec[t.name] = (shape, t.dtype)
    return spec


def examples_function(tf, call, contract, spec):
    features = {n: tf.io.FixedLenFeature(shape, tf.float32 if dt.startswith("float") else tf.int64)
                for n, (shape, dt) in spec.items()}

    def parse(examples):
        parsed = tf.io.parse_example(examples, features)
        return call({n: tf.cast(parsed[n], tf.as_dtype(dt)) for n, (_, dt) in spec.items()})

    return tf.function(parse, input_signature=[tf.TensorSpec([None], tf.string, name="examples")])


def serialize_examples(inputs: Mapping[str, np.ndarray]) -> list[bytes]:
    from deploykit.tfenv import tensorflow

    tf = tensorflow()
    n = len(next(iter(inputs.values())))
    out = []
    for i in range(n):
        feature = {}
        for k, v in inputs.items():
            flat = np.asarray(v[i]).ravel()
            feature[k] = (tf.train.Feature(float_list=tf.train.FloatList(value=flat.tolist()))
                          if flat.dtype.kind == "f" else tf.train.Feature(int64_list=tf.train.Int64List(value=flat.tolist())))
        out.append(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return out


def load_version(version_dir: Path) -> tuple[object, float]:
    """(the repository version's SavedModel loaded with tf.saved_model.load, milliseconds it took)."""
    from deploykit.tfenv import tensorflow

    tf = tensorflow()
    t0 = time.perf_counter()
    loaded = tf.saved_model.load(str(version_dir))
    return loaded, (time.perf_counter() - t0) * 1000


def in_process(version_dir: Path, inputs: Mapping[str, np.ndarray], *, check_examples: bool,
               loaded: tuple[object, float] | None = None) -> dict[str, np.ndarray]:
    """Call the repository version's `serving_default` on every row (`loaded`: load_version's answer,
    else it loads)."""
    from deploykit.tfenv import tensorflow

    tf = tensorflow()
    loaded = (loaded or load_version(version_dir))[0]
    fn = loaded.signatures["serving_default"]
    n = len(next(iter(inputs.values())))
    parts: dict[str, list] = {}
    for start in range(0, n, 256):
        out = fn(**{k: tf.constant(v[start : start + 256]) for k, v in inputs.items()})
        for k, y in out.items():
            parts.setdefault(k, []).append(y.numpy())
    result = {k: np.concatenate(v) for k, v in parts.items()}
    if check_examples:
        head = {k: v[:16] for k, v in inputs.items()}
        parsed = loaded.signatures[EXAMPLES_SIGNATURE](examples=tf.constant(serialize_examples(head)))
        for k, y in parsed.items():
            if not np.allclose(y.numpy(), result[k][:16], rtol=1e-5, atol=1e-6):
                raise DeployKitError(f"{version_dir}: signature {EXAMPLES_SIGNATURE} disagrees with serving_default on output {k}")
    return result


def in_process_job(request: dict) -> dict:
    """Worker job (deploykit.modelwork.call): `in_process` on the request's inputs, to an .npz."""
    from deploykit.arrays import read_npz, save_npz

    outputs = in_process(Path(request["version_dir"]), read_npz(request["inputs"], "parity inputs"),
                         check_examples=request["check_examples"])
    path = Path(request["work"]) / "in-process-outputs.npz"
    save_npz(path, outputs)
    return {"outputs": str(path)}


def in_process_latency_job(request: dict) -> dict:
    from deploykit.arrays import read_npz
    from deploykit.config import LatencySettings

    return in_process_latency(Path(request["version_dir"]), read_npz(request["inputs"], "parity inputs"),
                              LatencySettings(**request["latency"]))


def in_process_latency(version_dir: Path, inputs: Mapping[str, np.ndarray], lat,
                       loaded: tuple[object, float] | None = None) -> dict:
    """Latency of `serving_default` in process (`loaded`: load_version's answer, not yet called, else it loads)."""
    from deploykit.tfenv import tensorflow
    from deploykit.validation.latency import Sampling, timed_calls

    tf = tensorflow()
    model, load_ms = loaded or load_version(version_dir)
    fn = model.signatures["serving_default"]
    rows = [{k: tf.constant(v[i : i + 1]) for k, v in inputs.items()} for i in range(min(64, len(next(iter(inputs.values())))))]
    timings, first_ms, stopped = timed_calls(lambda i: fn(**rows[i % len(rows)]), lat.warmup, Sampling.of(lat))
    import resource

    return {"ok": True, "timings_ms": timings, "stopped": stopped, "warmup": lat.warmup, "load_ms": load_ms, "first_inference_ms": first_ms,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "threads": None,
            "runtime": "tf-serving[in-process]", "runtime_version": f"tensorflow {tf.__version__}"}


def image_component(model_name: str) -> str:
    """The model name as a Docker repository path component (lowercase; separators . _ - between
    letters and digits only), for the image tag; the repository keeps the name as given."""
    name = re.sub(r"[^a-z0-9]+", lambda m: m.group(0) if m.group(0) in (".", "_", "__") or set(m.group(0)) == {"-"}
                  else "-", model_name.lower())
    return name.strip("._-") or "model"


def _ensure_base(c, ref: str) -> None:
    """The base image must be local or pullable; otherwise exit 4 naming --base-image."""
    try:
        c.images.get(ref)
        return
    except Exception:  # noqa: BLE001 - ImageNotFound, or a digest reference not known locally
        pass
    try:
        c.images.pull(ref)
    except Exception as exc:  # noqa: BLE001
        reason = " ".join(str(getattr(exc, "explanation", None) or exc or type(exc).__name__).split())
        reason = reason if len(reason) <= 160 else reason[:157] + "..."
        raise MissingRuntimeError(f"--base-image {ref}: not available locally and cannot be pulled ({reason}); "
                                  f"load it with `docker load -i IMAGE.tar` (or docker pull where a registry is "
                                  f"reachable), pass --base-image with a local image, or pass --no-container to "
                                  f"validate in process only") from None


def _user_and_health(running) -> dict:
    """The hardening the container actually ran with (from the Engine API)."""
    cfg = running.container.attrs.get("HostConfig", {})
    return {"user": running.container.attrs.get("Config", {}).get("User"), "read_only_rootfs": cfg.get("ReadonlyRootfs"),
            "cap_drop": cfg.get("CapDrop"), "security_opt": cfg.get("SecurityOpt")}


def _memory_mb(container) -> float | None:
    try:
        stats = container.stats(stream=False)["memory_stats"]
        return round((stats.get("max_usage") or stats.get("usage")) / 2**20, 1)
    except Exception:  # noqa: BLE001
        return None


def _revision() -> str:
    try:
        proc = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        return proc.stdout.strip() if proc.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"
