"""The TF.js target's settings: the `[js]` table of the config file and the `--js-*` options."""
from __future__ import annotations

from dataclasses import dataclass

from deploykit.errors import BadInputError
from deploykit.targets.base import Option

VARIANTS = ("float32", "float16", "uint16", "uint8")
BACKENDS = ("cpu", "wasm", "chromium-wasm", "chromium-webgl")  # chromium-*: the headless browser check


@dataclass(frozen=True)
class JSSettings:
    format: str = "graph"  # graph (from the SavedModel) or layers (from a tf_keras model)
    shard_bytes: int = 4 * 1024 * 1024  # weight shard size
    backends: tuple[str, ...] = ("cpu", "wasm", "chromium-wasm")  # chromium-*: the headless browser check
    quantize: tuple[str, ...] | None = None  # js variants; None = --quantize; ("auto",) = smallest that passes

    @property
    def auto(self) -> bool:
        return self.quantize is not None and "auto" in self.quantize


OPTIONS = (
    Option("--js-format", "format", "TF.js bundle format (default: graph).", kind="choice", choices=("graph", "layers")),
    Option("--js-shard-bytes", "shard_bytes", "TF.js weight shard size in bytes (default: 4194304).", metavar="N", type=int),
    Option("--js-backends", "backends", "TF.js backends to validate on: cpu,wasm,chromium-wasm,chromium-webgl "
           "(default: cpu,wasm,chromium-wasm).", metavar="LIST"),
    Option("--js-quantize", "quantize", "TF.js variants (float32,float16,uint16,uint8), or auto: keep the smallest "
           "that passes its budget.", metavar="LIST|auto"),
)


def check(js: JSSettings) -> None:
    if js.format not in ("graph", "layers"):
        raise BadInputError(f"js.format: expected graph or layers, got {js.format!r}")
    if js.shard_bytes < 1024:
        raise BadInputError(f"js.shard_bytes: expected a whole number of bytes >= 1024, got {js.shard_bytes!r}")
    unknown = [b for b in js.backends if b not in BACKENDS]
    if unknown or not js.backends:
        raise BadInputError(f"js.backends: unknown backend(s) {', '.join(map(str, unknown)) or '(none given)'} "
                            f"(known: {', '.join(BACKENDS)})")
    if js.quantize is not None:
        unknown = [v for v in js.quantize if v not in (*VARIANTS, "auto")]
        if unknown or not js.quantize:
            raise BadInputError(f"js.quantize: unknown variant(s) {', '.join(map(str, unknown)) or '(none given)'} "
                                f"(known: {', '.join(VARIANTS)}, or auto)")
