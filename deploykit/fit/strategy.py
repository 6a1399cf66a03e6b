"""Pick the tf.distribute strategy named in the config, and say who this process is in the job.

`TF_CONFIG` (set by `--local-workers` or by the Kubeflow Training Operator) describes the cluster.
Dataset sharding across workers is set explicitly (`shard_policy`), never left to AUTO's guess.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

from deploykit.errors import BadInputError
from deploykit.tfenv import tensorflow


@dataclass(frozen=True)
class Role:
    """This process's place in the job: task type/index and whether it writes the outputs."""

    task_type: str | None  # None: a single-process run
    task_index: int = 0
    num_workers: int = 1
    has_chief: bool = False

    @property
    def is_chief(self) -> bool:
        # Without an explicit chief, worker 0 is the chief (MultiWorkerMirroredStrategy convention).
        return self.task_type in (None, "chief") or (self.task_type == "worker" and self.task_index == 0 and not self.has_chief)


def tf_config() -> dict | None:
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return None
    try:
        conf = json.loads(raw)
        conf["cluster"], conf["task"]["type"], int(conf["task"]["index"])
    except (ValueError, KeyError, TypeError) as exc:
        raise BadInputError(f"TF_CONFIG: not a valid cluster description ({exc})") from None
    return conf


def role_from_env() -> Role:
    conf = tf_config()
    if conf is None:
        return Role(None)
    cluster = conf["cluster"]
    return Role(conf["task"]["type"], int(conf["task"]["index"]), len(cluster.get("worker", [])), "chief" in cluster)


def make_strategy(name: str):
    """Return the strategy object for `name` (for parameter_server: the coordinator's strategy)."""
    tf = tensorflow()
    if name == "none":
        return tf.distribute.get_strategy()  # the default (no-op) strategy
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy("/cpu:0")
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    conf = tf_config()
    if name == "multi_worker":
        if conf is None:
            raise BadInputError("strategy: multi_worker needs TF_CONFIG (use --local-workers N, or run under the Training Operator)")
        return tf.distribute.MultiWorkerMirroredStrategy(
            communication_options=tf.distribute.experimental.CommunicationOptions(
                implementation=tf.distribute.experimental.CommunicationImplementation.RING))
    if name == "parameter_server":
        if conf is None or not conf["cluster"].get("ps"):
            raise BadInputError("strategy: parameter_server needs TF_CONFIG with ps and worker tasks (use --local-workers N)")
        resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
        return tf.distribute.ParameterServerStrategy(resolver)
    raise BadInputError(f"strategy: unknown strategy {name!r}")


def run_server() -> None:
    """Serve as a parameter-server job's `ps` or `worker` task until the coordinator is done."""
    tf = tensorflow()
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    server = tf.distribute.Server(
        resolver.cluster_spec(), job_name=resolver.task_type, task_index=resolver.task_id,
        protocol=resolver.rpc_layer or "grpc", start=True)
    server.join()


def shard_options(policy: str):
    """tf.data options carrying the auto-shard policy named in the config."""
    tf = tensorflow()
    p = tf.data.experimental.AutoShardPolicy
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = {
        "data": p.DATA, "file": p.FILE, "auto": p.AUTO, "off": p.OFF}[policy]
    return options


def replicas(strategy) -> int:
    return int(strategy.num_replicas_in_sync)
