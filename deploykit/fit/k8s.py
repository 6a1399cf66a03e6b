"""`--emit-k8s DIR`: the same job as Kubeflow Training Operator manifests.

Writes a ConfigMap holding the resolved training settings and a `kubeflow.org/v1` TFJob whose
replicas run `deploykit train --config /etc/deploykit/train.json --out RUN_DIR`; the operator sets
TF_CONFIG in every pod, which is all `deploykit train` needs to take its place in the cluster.
Outputs go to a PersistentVolumeClaim shared by the pods (the chief writes; workers need it for
their temporary checkpoint files and for the backup that restarted pods resume from).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from deploykit.fit.config import TrainConfig

RUN_MOUNT = "/runs"
CONFIG_MOUNT = "/etc/deploykit"


def job_name(cfg: TrainConfig) -> str:
    base = (cfg.model or "deploykit-example").split(":")[-1]
    name = re.sub(r"[^a-z0-9-]+", "-", f"train-{base}".lower()).strip("-")
    return name[:52] or "train"


def _replica(cfg: TrainConfig, name: str, replicas: int, run_dir: str) -> dict:
    container = {
        "name": "tensorflow",  # the Training Operator finds the TF container by this name
        "image": cfg.image,
        "command": ["deploykit", "train", "--config", f"{CONFIG_MOUNT}/train.json", "--out", f"{RUN_MOUNT}/{run_dir}"],
        "ports": [{"name": "tfjob-port", "containerPort": 2222}],
        "resources": {"requests": {"cpu": "1", "memory": "2Gi"}},
        "volumeMounts": [{"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": True},
                         {"name": "runs", "mountPath": RUN_MOUNT}],
    }
    return {
        "replicas": replicas,
        "restartPolicy": "OnFailure",  # a lost pod restarts and resumes from the backup
        "template": {"spec": {
            "containers": [container],
            "volumes": [{"name": "config", "configMap": {"name": f"{name}-config"}},
                        {"name": "runs", "persistentVolumeClaim": {"claimName": f"{name}-runs"}}],
        }},
    }


def manifests(cfg: TrainConfig, workers: int = 2, run_dir: str = "run") -> list[dict]:
    name = job_name(cfg)
    settings = cfg.to_json()
    if settings["strategy"] not in ("multi_worker", "parameter_server"):
        settings["strategy"] = "multi_worker"
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{name}-config"},
                  "data": {"train.json": json.dumps(settings, indent=2)}}
    if settings["strategy"] == "parameter_server":
        specs = {"Chief": _replica(cfg, name, 1, run_dir), "PS": _replica(cfg, name, cfg.num_ps, run_dir),
                 "Worker": _replica(cfg, name, workers, run_dir)}
    else:
        specs = {"Worker": _replica(cfg, name, workers, run_dir)}
    tfjob = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "TFJob",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "deploykit"}},
        "spec": {
            "runPolicy": {"cleanPodPolicy": "Running", "backoffLimit": 3},
            "tfReplicaSpecs": specs,
        },
    }
    if "Chief" not in specs:
        tfjob["spec"]["successPolicy"] = "AllWorkers"  # MultiWorkerMirrored: every worker must finish
    pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": f"{name}-runs"},
           "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "5Gi"}}}}
    return [config_map, pvc, tfjob]


def emit(cfg: TrainConfig, out_dir: str | Path, workers: int = 2, out: str = "run") -> dict:
    """Write DIR/<name>.yaml (ConfigMap, PersistentVolumeClaim, TFJob) and DIR/<name>.json (the same as a JSON list)."""
    import yaml

    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    docs = manifests(cfg, workers, Path(out).name or "run")
    tfjob = docs[-1]
    name = tfjob["metadata"]["name"]
    yaml_path, json_path = d / f"{name}.yaml", d / f"{name}.json"
    yaml_path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    json_path.write_text(json.dumps(docs, indent=2) + "\n")
    strategy = "parameter_server" if "PS" in tfjob["spec"]["tfReplicaSpecs"] else "multi_worker"
    return {"manifests": [str(yaml_path), str(json_path)], "image": cfg.image, "tfjob": name,
            "workers": workers, "strategy": strategy}
