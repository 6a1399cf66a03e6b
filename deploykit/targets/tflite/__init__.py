"""The TFLite target: `target.py` (prepare, convert, run: the TFLite converter, then the LiteRT
interpreter through the harness in `targets/tflite/harness.py`, a child process), `settings.py`
(`[tflite]`, `--allow-select-tf-ops`) and `preflight.py` (Flex ops of a flatbuffer, calibration data)."""
