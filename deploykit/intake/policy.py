"""The security policy for models from other people: a model file is a program.

Keras configs can carry Python code (a `Lambda` layer's marshalled bytecode) or name arbitrary
modules and functions to import. tf_keras' HDF5 loader has no safe mode at all, so deploykit reads
the config itself and refuses such models unless the user opts in with
`--allow-unsafe-deserialization`. SavedModels are loaded as graphs (no Python runs), but graphs
can read or write files; those ops are refused the same way.
"""
from __future__ import annotations

from typing import Any, Iterator

from deploykit.errors import SecurityError

CODE_CLASSES = {"Lambda", "__lambda__", "__function__"}
# Packages a Keras config may name (with their submodules) without running user code. Matched on
# dotted names: "keras_evil" or "tensorflow_hub" are other packages, and tf_keras imports any module
# a config names.
TRUSTED_MODULE_PREFIXES = ("keras", "tf_keras", "tensorflow", "builtins")
# Layers that read files or fetch URLs when they are constructed, i.e. while the model loads.
LOAD_TIME_IO_CLASSES = {"TFSMLayer": "loads an external SavedModel", "KerasLayer": "loads a TF Hub model"}
# Layer settings naming a file or URL read at construction (e.g. StringLookup's vocabulary file).
PATH_KEYS = ("vocabulary", "filepath", "handle", "path", "url")
# Graph ops that touch the file system, the network or the Python interpreter.
FORBIDDEN_OPS = {
    "ReadFile", "WriteFile", "MatchingFiles", "DeleteFile", "MergeV2Checkpoints",
    "SaveV2", "Save", "SaveSlices", "PyFunc", "PyFuncStateless", "EagerPyFunc",
    "ImmutableConst", "DecodeProto", "TFRecordDataset", "FixedLengthRecordDataset",
    "TextLineDataset", "ExperimentalLMDBDataset", "LMDBDataset", "SqlDataset",
}


def _walk(node: Any, path: str = "") -> Iterator[tuple[str, dict]]:
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}[{i}]")


def config_findings(config: dict) -> list[str]:
    """Every place in a Keras model config that would run or import code on load."""
    findings = []
    for where, node in _walk(config):
        # a layer entry names itself in its "config"; a layer's own config dict (where a Lambda's
        # code lives) names itself directly
        layer = node["config"].get("name") if isinstance(node.get("config"), dict) else node.get("name")
        label = f"layer '{layer}'" if layer else where or "config"
        cls = node.get("class_name")
        if cls in CODE_CLASSES:
            findings.append(f"{label} is a {cls} (carries Python code)")
        if node.get("function_type") in ("lambda", "raw"):
            findings.append(f"{label} carries marshalled Python code")
        module = node.get("module")
        if isinstance(module, str) and not _trusted(module):
            findings.append(f"{label} names module '{module}'")
        registered = node.get("registered_name")
        if isinstance(registered, str) and registered and cls not in (None, registered):
            if not _trusted(registered):
                findings.append(f"{label} names custom object '{registered}'")
        if cls in LOAD_TIME_IO_CLASSES:
            findings.append(f"{label} is a {cls} ({LOAD_TIME_IO_CLASSES[cls]} at load time)")
        settings = node.get("config") if isinstance(node.get("config"), dict) else {}
        for key in PATH_KEYS:
            value = settings.get(key)
            if isinstance(value, str) and value:
                findings.append(f"{label} reads '{value[:200]}' ({key}) at load time")
    findings += [f"config names URL '{url[:200]}'" for url in _urls(config)]
    return sorted(set(findings))


def _trusted(name: str) -> bool:
    """'keras', 'keras.layers', 'tf_keras>Foo' are trusted; 'keras_evil', 'tensorflow_hub' are not."""
    return any(name == p or name.startswith((p + ".", p + ">")) for p in TRUSTED_MODULE_PREFIXES)


def _urls(node: Any) -> Iterator[str]:
    """Every string in the config that is a URL: nothing in a model config should be fetched."""
    if isinstance(node, dict):
        for value in node.values():
            yield from _urls(value)
    elif isinstance(node, list):
        for value in node:
            yield from _urls(value)
    elif isinstance(node, str) and "://" in node:
        yield node


def enforce_config(config: dict | None, location: str, allow_unsafe: bool) -> list[str]:
    """Raise SecurityError (exit 5) unless allowed; return the findings for the manifest."""
    findings = config_findings(config) if config else []
    if findings and not allow_unsafe:
        raise SecurityError(
            f"{location}: refused: {findings[0]}"
            + (f" (+{len(findings) - 1} more)" if len(findings) > 1 else "")
            + "; pass --allow-unsafe-deserialization only if you trust this file",
            details={"findings": findings},
        )
    return findings


def graph_findings(op_types: set[str]) -> list[str]:
    return sorted(f"graph uses op {op}" for op in op_types & FORBIDDEN_OPS)


def enforce_graph(op_types: set[str], location: str, allow_unsafe: bool) -> list[str]:
    findings = graph_findings(op_types)
    if findings and not allow_unsafe:
        raise SecurityError(
            f"{location}: refused: {findings[0]}"
            + (f" (+{len(findings) - 1} more)" if len(findings) > 1 else "")
            + "; pass --allow-unsafe-deserialization only if you trust this model",
            details={"findings": findings},
        )
    return findings
