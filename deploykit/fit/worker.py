"""One process of a local job: `python -m deploykit.fit.worker --config-json FILE --out DIR`.

Started by the launcher with TF_CONFIG set; does exactly what `deploykit train` does for one task of
a real cluster. Errors print as `deploykit: error: ...` and exit with their documented code.
"""
from __future__ import annotations

import argparse
import json
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deploykit.fit.worker")
    parser.add_argument("--config-json", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--threads", type=int, default=0, help="TensorFlow intra-op threads (0 = TF's default)")
    args = parser.parse_args(argv)
    from deploykit.errors import DeployKitError
    from deploykit.fit.config import make_train_config
    from deploykit.progress import Reporter

    try:
        with open(args.config_json, encoding="utf-8") as f:
            cfg = make_train_config(json.load(f))
        if args.threads:
            from deploykit.tfenv import tensorflow

            tensorflow().config.threading.set_intra_op_parallelism_threads(args.threads)
        from deploykit.fit.trainer import run

        run(cfg, args.out, Reporter(stream=sys.stdout, details=True))  # stdout is this task's log (RUN/logs/)
    except DeployKitError as exc:
        print(f"deploykit: error: {exc.message}", file=sys.stdout, flush=True)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    status = main()
    sys.stdout.flush()
    # Skip interpreter teardown: a parameter-server coordinator's and a collective worker's background
    # threads can hold the exit for many seconds after everything has been written.
    os._exit(status)
