"""Validation: run each artifact in its own runtime (`judge`), compare outputs with the reference
(`parity`), and summarize timings (`latency`). Used by `build` and by `deploykit validate OUT`."""
