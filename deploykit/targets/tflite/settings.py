"""The TFLite target's settings: the `[tflite]` table (or the top-level key, as before) and
`--allow-select-tf-ops`."""
from __future__ import annotations

from dataclasses import dataclass

from deploykit.targets.base import Option


@dataclass(frozen=True)
class TFLiteSettings:
    allow_select_tf_ops: bool = False  # ship TensorFlow ops the builtins lack (the Flex delegate)


OPTIONS = (
    Option("--allow-select-tf-ops", "allow_select_tf_ops", "Allow TensorFlow ops outside the TFLite builtins (the "
           "artifact then needs the Flex delegate).", kind="flag", flag_value=True),
)
