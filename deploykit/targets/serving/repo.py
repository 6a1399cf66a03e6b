"""The TF Serving model repository: what `deploykit build --target serving` writes under `serving/`.

    serving/
      models/NAME/VERSION/            SavedModel (saved_model.pb, variables/) + assets.extra/tf_serving_warmup_requests
      models/NAME/OTHER/              with --model-base-path: each kept version the policy serves (versions.py)
      models.config                   model_config_list (base_path /models/NAME, the version policy)
      batching_parameters.txt         used when the server runs with --enable_batching
      Dockerfile                      rendered from docker/Dockerfile.serving.j2 (build context: this folder)

TF Serving loads only version folders whose names are integers and may load a version while its files
are still being copied, so a version is written under a non-integer name beside the final one and
renamed into place (one atomic rename on the same filesystem): a polling server sees either nothing
or the whole version.
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Mapping

import numpy as np

WARMUP_FILE = "tf_serving_warmup_requests"
BATCHING_FILE = "batching_parameters.txt"
WARMUP_ROWS = 8  # single-row requests replayed by the server before it reports AVAILABLE
CONTAINER_MODELS = "/models"
# tensorflow_model_server flags for server-side batching with the repository's parameters (the
# image's SERVING_FLAGS; the Dockerfile copies the file to /models/)
BATCHING_FLAGS = f"--enable_batching=true --batching_parameters_file={CONTAINER_MODELS}/{BATCHING_FILE}"


def model_name(location: str) -> str:
    """A server-friendly model name from the model's location (lowercase letters, digits, _ and -)."""
    stem = location.rsplit(":", 1)[-1].rstrip("/").rsplit("/", 1)[-1]
    stem = re.sub(r"\.(keras|h5|hdf5)$", "", stem, flags=re.I)
    name = re.sub(r"[^a-z0-9_-]+", "_", stem.lower()).strip("_-")
    return name[:63] or "model"


def write_version(model_dir: Path, version: int | str, saved_model: Path, warmup: list[bytes] | None = None) -> Path:
    """Copy `saved_model` to model_dir/VERSION atomically (staged under a non-integer name, then renamed).
    VERSION is a positive integer, or a non-integer name a server ignores (a version not numbered yet)."""
    if isinstance(version, int) and version < 1:
        raise ValueError("a TF Serving version is a positive integer")
    model_dir.mkdir(parents=True, exist_ok=True)
    final = model_dir / str(version)
    if final.exists():
        raise FileExistsError(f"{final} exists: versions are immutable, write a new version number")
    staging = model_dir / f".staging-{version}-{os.getpid()}"  # not an integer: the server ignores it
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(saved_model, staging)
    if warmup is not None:
        from deploykit.tfenv import tensorflow

        (staging / "assets.extra").mkdir(exist_ok=True)
        with tensorflow().io.TFRecordWriter(str(staging / "assets.extra" / WARMUP_FILE)) as writer:
            for record in warmup:
                writer.write(record)
    _fsync_tree(staging)
    os.rename(staging, final)
    return final


def _fsync_tree(root: Path) -> None:
    for p in root.rglob("*"):
        if p.is_file():
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())


def models_config(names: list[str], root: str = CONTAINER_MODELS, policy: str = "latest { num_versions: 1 }") -> str:
    """A model_config_list text proto; base paths point at the container's model folder. `policy`: a
    model_version_policy message in text format (versions.VersionPolicy.proto())."""
    blocks = []
    for name in names:
        blocks.append(
            "  config {\n"
            f'    name: "{name}"\n'
            f'    base_path: "{root}/{name}"\n'
            '    model_platform: "tensorflow"\n'
            f"    model_version_policy {{ {policy} }}\n"
            "  }\n"
        )
    return "model_config_list {\n" + "".join(blocks) + "}\n"


def batching_parameters(max_batch_size: int = 32, timeout_micros: int = 2000, threads: int = 2) -> str:
    """Server-side batching settings (a BatchingParameters text proto), used with --enable_batching."""
    return (
        f"max_batch_size {{ value: {max_batch_size} }}\n"
        f"batch_timeout_micros {{ value: {timeout_micros} }}\n"
        f"max_enqueued_batches {{ value: 100 }}\n"
        f"num_batch_threads {{ value: {threads} }}\n"
        "pad_variable_length_inputs: false\n"
    )


def warmup_requests(name: str, inputs: Mapping[str, np.ndarray], rows: int = WARMUP_ROWS,
                    signature: str = "serving_default") -> list[bytes]:
    """Serialized PredictionLog records (tensorflow-serving-api) built from the parity data."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    from deploykit.tfenv import tensorflow

    tf = tensorflow()
    n = min(rows, len(next(iter(inputs.values()))))
    records = []
    for i in range(n):
        request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name=name, signature_name=signature))
        for key, array in inputs.items():
            request.inputs[key].CopyFrom(tf.make_tensor_proto(np.asarray(array[i : i + 1])))
        log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
        records.append(log.SerializeToString())
    return records


def read_warmup(path: Path) -> list:
    """The PredictionLog records in a warm-up file (for tests and `deploykit validate`)."""
    from tensorflow_serving.apis import prediction_log_pb2

    from deploykit.tfenv import tensorflow

    tf = tensorflow()
    return [prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in tf.data.TFRecordDataset(str(path))]
