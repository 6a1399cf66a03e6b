"""The TFLite target: `target.py` converts with the TFLite converter and runs artifacts in the
LiteRT interpreter through the harness in `targets/tflite/harness.py` (a child process)."""
