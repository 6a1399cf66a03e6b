"""The `Target` interface every deployment target implements.

A target declares, as data on its class: its variants, default budgets and runtime; its settings
(a frozen dataclass read from the `[NAME]` table of the config file) and the `deploykit build`
options that fill them. It implements three steps: `prepare` (preflight and plan, once per build),
`convert` (one variant) and `run` (execute an artifact in the target's own runtime, in a child
process), plus optional hooks the pipeline calls at fixed points (`plan_variants`,
`after_validation`, `failure_notes`, `publish_artifact`). Validation, budgets, manifests and
reports are generic and live outside the targets; nothing outside a target's folder names it.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

if TYPE_CHECKING:  # keep TensorFlow out of `deploykit targets`
    from deploykit.config import BuildConfig, LatencySettings
    from deploykit.intake.loader import LoadedModel
    from deploykit.progress import Reporter
    from deploykit.records import ArtifactRecord, ManifestEntry


@dataclass(frozen=True)
class Artifact:
    target: str
    variant: str
    path: Path  # absolute while building; recorded relative to the output folder
    details: Mapping = field(default_factory=dict)  # conversion facts recorded in the manifest
    # runtime checks the intake worker already ran on it (`Target.check_in_preflight`): not recorded
    checked: Mapping = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class RunRequest:
    """What the runtime harness is asked to do with one artifact.

    In parity mode the harness writes one `.npz` of outputs per backend it ran
    (`outputs_for(backend)`) and returns `{"ok": True, "backends": [names], ...}`; the generic
    validation compares every backend's outputs with the reference."""

    artifact: Artifact
    inputs: Path  # .npz, one array per input name
    outputs: Path  # prefix of the per-backend output files (.npz) in parity mode
    mode: str  # "parity" | "latency"
    latency: "LatencySettings"

    def outputs_for(self, backend: str) -> Path:
        return self.outputs.with_name(f"{self.outputs.name}.{backend}.npz")


@dataclass(frozen=True)
class Option:
    """A `deploykit build` option a target adds; its value lands in the target's settings as `key`.

    `kind` is "value" (takes an argument), "flag" (sets `key` to `flag_value`) or "choice"."""

    flag: str
    key: str
    help: str
    metavar: str | None = None
    kind: str = "value"
    type: Any = str  # click parameter type for "value": str, int, float
    flag_value: Any = True
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class NoSettings:
    """A target without settings of its own."""


class Target(ABC):
    name: ClassVar[str]
    summary: ClassVar[str]
    runtime: ClassVar[str]
    variants: ClassVar[tuple[str, ...]]
    # variant -> metric -> limit; see validate.parity.BUDGET_METRICS for the metric names
    default_budgets: ClassVar[Mapping[str, Mapping[str, float]]]
    default: ClassVar[bool] = False  # built when no --target is given
    # the target's settings: a frozen dataclass, the `[NAME]` table of the config file
    settings_class: ClassVar[type] = NoSettings
    # settings also accepted at the top level of a config file and as `build()` keywords
    top_level_settings: ClassVar[tuple[str, ...]] = ()
    # `deploykit build` options that fill the settings (in this order in --help)
    options: ClassVar[tuple[Option, ...]] = ()
    # `deploykit publish` to a registry: the OCI media type of a single-file artifact (folders go
    # as one tar+gzip layer), and what to say when a build has no artifact of this target
    artifact_media_type: ClassVar[str] = "application/octet-stream"
    publish_note_when_absent: ClassVar[str | None] = None

    def __init__(self, settings: Any = None) -> None:
        self.settings = settings if settings is not None else self.settings_class()
        self.plan: dict = {}
        # run model code (in-process checks, Python harnesses) inside the sandbox; the pipeline
        # clears it for a trusted model (`--trust-model`, a module:function builder)
        self.sandboxed = True

    @classmethod
    def describe(cls) -> dict:
        return {
            "name": cls.name,
            "summary": cls.summary,
            "runtime": cls.runtime,
            "variants": list(cls.variants),
            "default_budgets": {k: dict(v) for k, v in cls.default_budgets.items()},
        }

    @classmethod
    def check_settings(cls, settings: Any) -> None:
        """Refuse bad values of this target's settings (BadInputError naming `NAME.key`)."""

    # ---- hooks (optional) --------------------------------------------------------------------
    def plan_variants(self, asked: tuple[str, ...] | None) -> list[str]:
        """The variants this build converts, given `--quantize` (None: every variant)."""
        return [v for v in self.variants if asked is None or v in asked]

    def asked_variants(self) -> tuple[str, ...] | None:
        """Variants this target's own settings ask for (they must pass); None: the defaults."""
        return None

    def check_runtime(self, config: "BuildConfig | None" = None) -> None:
        """Raise MissingRuntimeError (exit 4) if this target's runtime cannot run here."""

    def after_validation(self, records: list["ArtifactRecord"], rep: "Reporter") -> dict | None:
        """After every artifact was judged, before the manifest: e.g. keep one variant (mark the
        others `rejected`), or push what passed. Returns facts merged into `targets.NAME`."""
        return None

    def before_commit(self, records: list["ArtifactRecord"], rep: "Reporter") -> None:
        """The whole build passed and its manifest is written; the output folder is renamed into place
        right after. The place for effects outside the output that only a passed build may have (e.g.
        add the version to the user's TF Serving repository). An error here fails the build and the
        output is left unchanged."""

    def failure_notes(self, records: list["ArtifactRecord"]) -> list[str]:
        """Extra lines for a failed build's error message (e.g. which variant would pass)."""
        return []

    @classmethod
    def publish_artifact(cls, entry: "ManifestEntry", destination: Any, notes: list[str]) -> dict | None:
        """`deploykit publish` to a registry, for a target whose artifact is more than its files
        (e.g. a Docker image): push it and return what was pushed. None: push the files as an OCI
        artifact (the default)."""
        return None

    @classmethod
    def remote_conflicts(cls, entry: "ManifestEntry", destination: Any) -> list[str] | None:
        """With `publish_artifact`: references under the destination that hold other content.
        None: the default check of the OCI artifact's checksum annotation."""
        return None

    # ---- the three steps -----------------------------------------------------------------------
    # `prepare` runs once per build in the intake worker, with the model; each `convert` runs in a
    # worker of its own, on a fresh instance that `resume` gave the preflight's state. So whatever
    # convert needs from prepare is JSON in `plan_state()` or a file in prepare's `work` folder.
    # A variant the preflight already made (`converted_in_preflight`) is written out by the intake
    # worker itself, right after `prepare`: a worker of its own would only import TensorFlow again.
    @abstractmethod
    def prepare(self, model: "LoadedModel", saved_model: Path, data: Mapping, config: "BuildConfig", work: Path) -> dict:
        """Preflight (e.g. unsupported ops) and plan; returns facts for the manifest. `work` is
        this target's own folder, handed to `resume` in each convert worker."""

    def converted_in_preflight(self, variant: str) -> bool:
        """After `prepare`: whether converting `variant` only writes out what the preflight already
        converted (so a crash there would have happened in the preflight). Default: no."""
        return False

    def check_in_preflight(self, artifact: Artifact, inputs: Path, latency: "LatencySettings | None",
                           work: Path) -> dict:
        """In the intake worker, right after it wrote `artifact` (a variant `converted_in_preflight`):
        the checks whose runtime is TensorFlow itself, run here so that no worker imports TensorFlow
        again for them. Returns {"outputs": {backend: .npz path}, "latency": raw latency result}
        (either may be missing; paths inside `work`), which `run` then uses for those backends
        (`RunRequest.artifact.checked`); `latency` is None when the build measures none. Default: {}."""
        return {}

    def plan_state(self) -> dict:
        """After `prepare`: what a convert worker needs (JSON). Default: `self.plan`."""
        return {"plan": dict(self.plan)}

    def resume(self, state: dict, work: Path, model: Any) -> None:
        """In a convert worker: restore `plan_state()`; `work` is prepare's folder, `model` a
        handle whose `get()` loads the model (only if this variant needs it)."""
        self.plan = dict(state.get("plan") or {})

    @abstractmethod
    def convert(self, variant: str, dest: Path, calibration: Mapping, config: "BuildConfig") -> Artifact:
        """Write one variant under `dest` (the worker's output folder, moved into the staging area)."""

    def after_convert(self, artifact: Artifact) -> Artifact:
        """In the build process, after a worker converted `artifact` (already in the staging area):
        work that needs the host, e.g. building a Docker image. Default: nothing."""
        return artifact

    @abstractmethod
    def run(self, request: RunRequest, work: Path) -> dict:
        """Run an artifact in the target's runtime; return the harness's raw result."""
