"""The security policy for models from other people: a model file is a program.

An allow-list (`deploykit.intake.allowlist`), checked before anything loads the model: a model is
accepted only when everything in it is known to be safe to load, and refused (SecurityError, exit
5) otherwise, unless the user passes `--allow-unsafe-deserialization`; the findings are then listed
in the manifest (`source.policy_findings_allowed`). What is vetted:

- Keras configs (tf_keras and Keras 3; `.keras` archives and `.h5` files): every dict with a
  `class_name`, anywhere in the config (layers, initializers, activations, `compile_config`, call
  arguments), names an allowed class or serialization marker, or is a serialized function naming
  an allowed function; every `module` and `registered_name` is one Keras itself writes for those;
  no value is marshalled Python code, a file path read at load time (vocabulary files ...) or a URL.
  tf_keras' HDF5 loader has no safe mode, and tf_keras imports whatever module a config names, so
  this is the only gate for those files.
- Weights inside `.keras` archives: `.npz` members are read by tf_keras with pickle allowed
  (`NpzIOStore`); a member holding object arrays (or that is not an .npz at all, which np.load
  would unpickle) is refused. Headers only are read, nothing is unpickled here.
- SavedModels: `saved_model.pb` is parsed (protobuf classes only, no loading: TensorBoard's copy of
  TensorFlow's `MetaGraphDef`, so the `deploykit` process never imports TensorFlow) and
  every op of every meta graph's graph and of every function of its library is checked against
  the op allow-list: serving functions, resource initializers, saveable save/restore functions,
  everything TensorFlow may run while loading or when the model is called. A function attribute
  naming something that is not in the library is checked as an op (TensorFlow runs it as one).
  Objects rebuilt by registered Python classes or savers are refused.

The saver subgraph. Every SavedModel carries a saver (`MetaGraphDef.saver_def`): a save tensor and a
restore op whose functions (TF2) or nodes (TF1) use SaveV2, RestoreV2 and MergeV2Checkpoints, file
ops refused everywhere else. TensorFlow's TF1 loader runs the restore op to read the variables from
the SavedModel's own `variables/` folder (TF2 restores through Python and runs neither). Decision:
these ops are allowed only (1) in the functions called by the saver_def's save and restore nodes and
by nothing else, or in graph nodes only those two depend on, and (2) on paths built from the saver's
filename tensor alone: through Identity/StringJoin/ShardedFilename/Select/Pack and the constants
TensorFlow's savers join ("_temp/part", ".part"), with the filename reaching the saver function as
the argument the save/restore node passes it. Anything else using them is a finding: a restore that
reads another file, a save into a path of the model's choosing, a saver function also called from
serving.

Not vetted here: the `module:function` builder (the user's own code) and the structure of files
(archive members leaving the archive, symbolic links, HDF5 links to other files, oversized configs),
which `sniff` refuses whatever the flag says.
"""
from __future__ import annotations

import base64
import binascii
import re
import zipfile
import zlib
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from deploykit.errors import BadInputError, SecurityError
from deploykit.intake import allowlist as allow

MAX_DEPTH = 200  # nesting of a Keras config; real models stay below 30
# Objects in a config that are not layers (their config "name" is not a layer name).
_NOT_LAYERS = (allow.INITIALIZER_CLASSES | allow.REGULARIZER_CONSTRAINT_CLASSES | allow.TRAINING_CLASSES
               | allow.DTYPE_POLICY_CLASSES | allow.SERIALIZATION_MARKERS) - allow.LAYER_CLASSES


# ---- entry point -----------------------------------------------------------------------------
def vet(source, allow_unsafe: bool) -> list[str]:
    """Every finding for `source` (a sniff.ModelSource); raise SecurityError (exit 5) unless
    allowed. Returns the findings for the manifest."""
    if source.kind == "saved_model":
        findings = saved_model_findings(Path(source.location))
    elif source.kind in ("keras_zip", "h5"):
        findings = config_findings(source.config, source.location) if source.config is not None else []
        for member, config in getattr(source, "member_configs", {}).items():
            findings += [f"archive member '{member[:200]}': {f}" for f in config_findings(config, source.location)]
        if source.kind == "keras_zip":
            findings += archive_findings(Path(source.location))
    else:  # module:function is the user's own code; the bundled example is ours
        findings = []
    return enforce(findings, source.location, allow_unsafe)


def enforce(findings: list[str], location: str, allow_unsafe: bool) -> list[str]:
    findings = sorted(set(findings))
    if findings and not allow_unsafe:
        raise SecurityError(
            f"{location}: refused: {findings[0]}"
            + (f" (+{len(findings) - 1} more)" if len(findings) > 1 else "")
            + "; pass --allow-unsafe-deserialization only if you trust this file",
            details={"findings": findings},
        )
    return findings


# ---- Keras configs -----------------------------------------------------------------------------
class _TooDeep(Exception):
    pass


def _walk(config: Any) -> Iterator[tuple[str, str, Any]]:
    """(label, key, value) for every value in the config, depth first, without recursion; `label`
    names the nearest layer ("layer 'dense'", plus the path inside it)."""
    stack: list[tuple[Any, str, str, str | None, str, int]] = [(config, "", "", None, "", 0)]
    while stack:
        node, path, key, layer, layer_path, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise _TooDeep
        if isinstance(node, dict) and isinstance(node.get("config"), dict) and "class_name" in node:
            name = node["config"].get("name")
            if isinstance(name, str) and not _in(node["class_name"], _NOT_LAYERS):
                layer, layer_path = name, path
        rel = path[len(layer_path):].lstrip(".") if layer is not None else path
        label = (f"layer '{layer}'" + (f" {rel}" if rel else "")) if layer is not None else (path or "config")
        yield label, key, node
        if isinstance(node, dict):
            for k, v in reversed(list(node.items())):
                stack.append((v, f"{path}.{k}" if path else str(k), str(k), layer, layer_path, depth + 1))
        elif isinstance(node, list):
            for i, v in reversed(list(enumerate(node))):
                stack.append((v, f"{path}[{i}]", key, layer, layer_path, depth + 1))


def config_findings(config: dict, location: str = "config") -> list[str]:
    """Every place in a Keras model config that names something outside the allow-list."""
    try:
        return _config_findings(config)
    except _TooDeep:
        raise BadInputError(f"{location}: model config nests deeper than any Keras model (more than "
                            f"{MAX_DEPTH} levels)") from None


def _config_findings(config: dict) -> list[str]:
    findings: list[str] = []
    for label, key, node in _walk(config):
        if isinstance(node, dict):
            findings += _object_findings(label, node)
        elif isinstance(node, str):
            if "://" in node:
                findings.append(f"config names URL '{node[:200]}'")
            if key in allow.ACTIVATION_KEYS and not _in(node, allow.FUNCTIONS):
                findings.append(f"{label} names activation '{node[:200]}'")
            if _marshalled(node):
                findings.append(f"{label} holds marshalled Python code")
    return sorted(set(findings))


def _object_findings(label: str, node: dict) -> list[str]:
    found = []
    if node.get("function_type") in ("lambda", "raw"):
        found.append(f"{label} carries marshalled Python code")
    if "class_name" not in node:
        return found
    cls = node["class_name"]
    if not isinstance(cls, str):
        return found + [f"{label} has a class_name that is not a string"]
    module = node.get("module")
    registered = node.get("registered_name")
    inner = node.get("config")
    settings = inner if isinstance(inner, dict) else {}
    if module is not None:
        modules = allow.FUNCTION_MODULES if cls == "function" else allow.KERAS_MODULES
        if not _in(module, modules):
            found.append(f"{label} names module '{str(module)[:200]}'")
    if cls == "function":
        if not _in(inner, allow.FUNCTIONS):
            found.append(f"{label} names function '{str(inner)[:200]}' (not an allowed Keras function)")
        if registered is not None and not _in(registered, {"function", inner}):
            found.append(f"{label} names custom object '{str(registered)[:200]}'")
        return found
    if cls in allow.REFUSED_CLASSES:
        found.append(f"{label} is a {cls} ({allow.REFUSED_CLASSES[cls]})")
    elif cls in allow.SERIALIZATION_MARKERS:
        found += _marker_findings(label, cls, node)
    elif cls not in allow.KERAS_CLASSES:
        found.append(f"{label} is a {cls[:200]} (not an allowed Keras class)")
    elif cls in allow.TF_OP_LAYER_CLASSES:
        found += _op_layer_findings(label, cls, settings)
    if registered is not None and not _in(registered, allow.REGISTERED_NAMES | {cls}) and cls != "__typespec__":
        found.append(f"{label} names custom object '{str(registered)[:200]}'")
    for k in allow.PATH_KEYS:
        value = settings.get(k)
        if isinstance(value, str) and value:
            found.append(f"{label} reads '{value[:200]}' ({k}) at load time")
    return found


def _in(value: Any, names) -> bool:
    """`value` is one of `names` (a config value may be of any JSON type)."""
    return isinstance(value, str) and value in names


def _marker_findings(label: str, cls: str, node: dict) -> list[str]:
    if cls == "__typespec__":
        ok = _in(node.get("spec_name"), allow.TYPE_SPEC_NAMES) and node.get("registered_name") is None
        return [] if ok else [f"{label} names type spec '{str(node.get('spec_name'))[:200]}'"]
    if cls == "TypeSpec" and not _in(node.get("type_spec"), allow.TYPE_SPEC_REGISTRY_NAMES):
        return [f"{label} names type spec '{str(node.get('type_spec'))[:200]}'"]
    return []


def _op_layer_findings(label: str, cls: str, settings: dict) -> list[str]:
    if cls in ("TFOpLambda", "SlicingOpLambda"):
        fn = settings.get("function")
        if not _in(fn, allow.TF_FUNCTIONS):
            return [f"{label} calls TensorFlow function '{str(fn)[:200]}' (not an allowed tensor function)"]
    elif cls in ("InstanceProperty", "InstanceMethod"):
        if not _in(settings.get("attr_name"), allow.KERAS_TENSOR_ATTRIBUTES):
            return [f"{label} calls tensor attribute '{str(settings.get('attr_name'))[:200]}'"]
    elif cls == "ClassMethod":
        symbol, method = settings.get("cls_symbol"), settings.get("method_name")
        if not _in(symbol, allow.RAGGED_CLASS_SYMBOLS) or not _in(method, allow.RAGGED_CLASS_METHODS):
            return [f"{label} calls class method '{str(symbol)[:100]}.{str(method)[:100]}'"]
    return []


_BASE64 = re.compile(r"[A-Za-z0-9+/=\s]{32,}")


def _marshalled(text: str) -> bool:
    """A base64 string holding a marshalled code object (how Keras stores a Lambda's bytecode):
    type byte 'c' (0x63, or 0xe3 with the ref flag), then five (3.8+: six) int32 fields and the
    bytecode as a bytes object ('s', 0x73 or 0xf3). Only the header is decoded, nothing is run."""
    if len(text) < 32 or not _BASE64.fullmatch(text[:64]):
        return False
    head = re.sub(r"\s", "", text)[:48]
    try:
        raw = base64.b64decode(head[: len(head) // 4 * 4], validate=True)
    except (binascii.Error, ValueError):
        return False
    return len(raw) > 25 and raw[0] in (0x63, 0xE3) and (raw[21] in (0x73, 0xF3) or raw[25] in (0x73, 0xF3))


# ---- weights inside .keras archives --------------------------------------------------------------
NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"


def archive_findings(path: Path) -> list[str]:
    """Members of a .keras archive that Keras would read with pickle allowed: `.npz`/`.npy` weights
    holding object arrays, or not holding arrays at all (np.load(allow_pickle=True) unpickles any
    other bytes). Reads zip directories and array headers only."""
    findings: list[str] = []
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if info.is_dir() or not info.filename.lower().endswith((".npz", ".npy")):
                    continue
                with zf.open(info) as fh:
                    findings += _npz_findings(info.filename, fh)
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
        raise BadInputError(f"{path}: truncated or corrupt .keras archive ({exc})") from None
    return findings


def _npz_findings(member: str, fh) -> list[str]:
    head = fh.read(len(NPY_MAGIC))
    fh.seek(0)
    if head.startswith(ZIP_MAGIC):
        found = []
        try:
            with zipfile.ZipFile(fh) as inner:
                for item in inner.infolist():
                    with inner.open(item) as arr:
                        if arr.read(len(NPY_MAGIC)) != NPY_MAGIC:
                            continue  # np.load returns such members as bytes
                        arr.seek(0)
                        if _npy_holds_objects(arr):
                            found.append(f"weights member '{member}' array '{item.filename[:200]}' holds Python "
                                         "objects (loading it unpickles them)")
        except zipfile.BadZipFile:
            return [f"weights member '{member}' is not a readable .npz archive (np.load would unpickle it)"]
        return found
    if head == NPY_MAGIC:
        return ([f"weights member '{member}' holds Python objects (loading it unpickles them)"]
                if _npy_holds_objects(fh) else [])
    return [f"weights member '{member}' is not an .npz archive (np.load would unpickle it)"]


def _npy_holds_objects(fh) -> bool:
    import numpy as np

    try:
        version = np.lib.format.read_magic(fh)
        _shape, _fortran, dtype = np.lib.format._read_array_header(fh, version)
    except (ValueError, SyntaxError, EOFError):
        return False  # np.load fails on it too (exit 2 from the loader), without unpickling
    return bool(dtype.hasobject)


# ---- SavedModels ---------------------------------------------------------------------------------
def _saved_model_class():
    """SavedModel { int64 saved_model_schema_version = 1; repeated MetaGraphDef meta_graphs = 2; }
    (tensorflow/core/protobuf/saved_model.proto) over TensorBoard's copy of `MetaGraphDef`
    (`tensorboard.compat.proto`, the same messages and field numbers as TensorFlow's, checked by
    tests/test_policy_allowlist.py; tensorboard is pinned by tensorflow). Importing TensorFlow for its class
    costs the `deploykit` process 3 s and 700 MB."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    from tensorboard.compat.proto import meta_graph_pb2

    pool, name = descriptor_pool.Default(), "deploykit.intake.SavedModel"
    try:
        return message_factory.GetMessageClass(pool.FindMessageTypeByName(name))
    except KeyError:
        pass
    F = descriptor_pb2.FieldDescriptorProto
    f = descriptor_pb2.FileDescriptorProto(name="deploykit/intake/saved_model.proto", package="deploykit.intake",
                                           syntax="proto3", dependency=[meta_graph_pb2.DESCRIPTOR.name])
    m = f.message_type.add(name="SavedModel")
    m.field.add(name="saved_model_schema_version", number=1, type=F.TYPE_INT64, label=F.LABEL_OPTIONAL)
    m.field.add(name="meta_graphs", number=2, type=F.TYPE_MESSAGE, label=F.LABEL_REPEATED,
                type_name=f".{meta_graph_pb2.MetaGraphDef.DESCRIPTOR.full_name}")
    pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(name))


def read_saved_model(folder: Path):
    """The SavedModel protobuf of `folder` (saved_model.pb or .pbtxt), parsed, nothing loaded."""
    from google.protobuf import message, text_format

    proto = _saved_model_class()()
    pb, pbtxt = folder / "saved_model.pb", folder / "saved_model.pbtxt"
    try:
        if pb.exists():
            proto.ParseFromString(pb.read_bytes())
        else:
            text_format.Parse(pbtxt.read_text(), proto)
    except (message.DecodeError, text_format.ParseError, UnicodeDecodeError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadInputError(f"{folder}: unreadable SavedModel ({first[:300]})") from None
    if not proto.meta_graphs:
        raise BadInputError(f"{folder}: unreadable SavedModel (no meta graph)")
    return proto


def saved_model_findings(folder: Path) -> list[str]:
    proto = read_saved_model(folder)
    findings: list[str] = []
    for meta_graph in proto.meta_graphs:
        _check_assets(folder, meta_graph)
        findings += _MetaGraph(meta_graph).findings()
    return sorted(set(findings))


def _check_assets(folder: Path, meta_graph) -> None:
    """Asset files are read from `assets/` by file name; a name leaving that folder would make
    TensorFlow read (and deploykit copy) another file. Refused whatever the flag says."""
    for asset in meta_graph.asset_file_def:
        name = asset.filename
        parts = PurePosixPath(name.replace("\\", "/")).parts
        if not name or name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts:
            raise SecurityError(f"{folder}: refused: asset '{name[:200]}' lies outside the SavedModel's assets folder",
                                details={"asset": name})


def _func_names(attr) -> Iterator[str]:
    """Function names referenced by an AttrValue (func, list of funcs, and their own attrs)."""
    stack = [attr]
    while stack:
        value = stack.pop()
        kind = value.WhichOneof("value")
        if kind == "func":
            yield value.func.name
            stack.extend(value.func.attr.values())
        elif kind == "list":
            for fn in value.list.func:
                yield fn.name
                stack.extend(fn.attr.values())


def _node_name(ref: str) -> str:
    return ref.lstrip("^").split(":")[0]


class _MetaGraph:
    """The op and call structure of one MetaGraphDef, and its findings."""

    CALL_OPS = ("PartitionedCall", "StatefulPartitionedCall")

    def __init__(self, meta_graph):
        self.mg = meta_graph
        self.graph = {n.name: n for n in meta_graph.graph_def.node}
        self.library = {f.signature.name: f for f in meta_graph.graph_def.library.function}
        self.calls: dict[tuple[str, str], set[str]] = defaultdict(set)  # (kind, name) -> functions
        self.callers: dict[str, set[tuple[str, str]]] = defaultdict(set)
        for node in self.graph.values():
            self._record_calls(("graph", node.name), node)
        for name, fn in self.library.items():
            for node in fn.node_def:
                self._record_calls(("function", name), node)
            for value in fn.attr.values():
                self._record_calls_from_names(("function", name), _func_names(value))
        for grad in meta_graph.graph_def.library.gradient:
            self._record_calls_from_names(("gradient", grad.function_name), [grad.gradient_func])

    def _record_calls(self, owner: tuple[str, str], node) -> None:
        names = [node.op] if node.op in self.library else []
        for value in node.attr.values():
            names += _func_names(value)
        self._record_calls_from_names(owner, names)

    def _record_calls_from_names(self, owner: tuple[str, str], names: Iterable[str]) -> None:
        for name in names:
            if name in self.library:
                self.calls[owner].add(name)
                self.callers[name].add(owner)

    # -- the saver subgraph --------------------------------------------------------------------
    def _saver(self) -> tuple[set[str], set[str], str | None]:
        """(graph nodes only the saver depends on, functions only the saver calls, the filename
        node)."""
        sd = self.mg.saver_def if self.mg.HasField("saver_def") else None
        roots = [_node_name(r) for r in (sd.save_tensor_name, sd.restore_op_name)] if sd else []
        roots = [r for r in roots if r in self.graph]
        if not roots:
            return set(), set(), None
        saver_nodes = self._closure(roots)
        others = self._closure([n for n in self.graph if n not in saver_nodes])
        saver_only = saver_nodes - others
        saver_fns = self._reachable([("graph", n) for n in saver_only])
        other_roots = [("graph", n) for n in self.graph if n not in saver_only]
        other_roots += [("function", f) for f in self.library if f not in saver_fns]
        other_roots += [("function", f) for f in self.mg.object_graph_def.concrete_functions if f in self.library]
        other_roots += [owner for owner in self.calls if owner[0] == "gradient"]
        saver_only_fns = saver_fns - self._reachable(other_roots)
        return saver_only, saver_only_fns, _node_name(sd.filename_tensor_name)

    def _closure(self, names: Iterable[str]) -> set[str]:
        """Graph nodes `names` depend on (data and control inputs), themselves included."""
        seen: set[str] = set()
        stack = [n for n in names if n in self.graph]
        while stack:
            name = stack.pop()
            if name in seen:
                continue
            seen.add(name)
            stack.extend(_node_name(i) for i in self.graph[name].input if _node_name(i) in self.graph)
        return seen

    def _reachable(self, owners: Iterable[tuple[str, str]]) -> set[str]:
        """Library functions called, directly or not, from `owners` (a function owner counts as
        reached itself)."""
        seen: set[str] = set()
        stack: list[str] = []
        for owner in owners:
            if owner[0] == "function":
                stack.append(owner[1])
            stack.extend(self.calls.get(owner, ()))
        while stack:
            name = stack.pop()
            if name in seen:
                continue
            seen.add(name)
            stack.extend(self.calls.get(("function", name), ()))
        return seen

    def _path_problems(self, nodes: dict, args: dict[str, int] | None, refs: list[str], filename: str | None,
                       ) -> tuple[set[int], list[str]]:
        """Trace the data inputs `refs` back: the argument indices they come from, and anything that
        is not TensorFlow's saver path (other ops, other constants, other placeholders)."""
        from tensorboard.util import tensor_util  # TensorFlow's MakeNdarray, on TensorBoard's TensorProto

        arg_indices: set[int] = set()
        problems: list[str] = []
        seen: set[str] = set()
        stack = [r for r in refs if not r.startswith("^")]
        while stack:
            ref = stack.pop()
            name = _node_name(ref)
            if name in seen:
                continue
            seen.add(name)
            if args is not None and ":" not in ref and name in args:
                arg_indices.add(args[name])
                continue
            if filename is not None and name == filename:
                continue
            node = nodes.get(name)
            if node is None:
                problems.append(f"input '{ref[:100]}'")
            elif node.op == "Const":
                value = tensor_util.make_ndarray(node.attr["value"].tensor)
                if value.dtype.kind in ("S", "O", "U"):
                    for item in value.ravel().tolist():
                        text = item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)
                        if not re.fullmatch(allow.SAVER_PATH_CONSTANTS, text):
                            problems.append(f"constant '{text[:100]}'")
            elif node.op not in allow.SAVER_PATH_OPS:
                problems.append(f"op {node.op}")
            else:
                stack.extend(i for i in node.input if not i.startswith("^"))
        return arg_indices, problems

    def _saver_path_findings(self, where: str, node, nodes: dict, args: dict[str, int] | None,
                             filename: str | None, fn_name: str | None) -> list[str]:
        paths = [0, 1] if node.op == "MergeV2Checkpoints" else [0]
        data = [i for i in node.input if not i.startswith("^")]
        inside = None if args is not None else filename  # in a function the filename comes in as an argument
        arg_indices, problems = self._path_problems(nodes, args, [data[i] for i in paths if i < len(data)], inside)
        for index in sorted(arg_indices):  # the path comes in as an argument: check every call site
            for owner in self.callers.get(fn_name, ()):
                problems += self._call_site_problems(owner, fn_name, index, filename)
        return [f"saver op {node.op} in {where} uses a path not built from the saver's filename ({p})"
                for p in sorted(set(problems))]

    def _call_site_problems(self, owner: tuple[str, str], fn_name: str, index: int, filename: str | None) -> list[str]:
        kind, name = owner
        if kind != "graph":
            return [f"called from function '{name}'"]
        node = self.graph[name]
        if node.op not in self.CALL_OPS + (fn_name,):
            return [f"called by op {node.op}"]
        data = [i for i in node.input if not i.startswith("^")]
        if index >= len(data):
            return [f"argument {index} missing"]
        _, problems = self._path_problems(self.graph, None, [data[index]], filename)
        return problems

    # -- findings ---------------------------------------------------------------------------------
    def findings(self) -> list[str]:
        saver_nodes, saver_fns, filename = self._saver()
        found: list[str] = []
        for node in self.graph.values():
            found += self._node_findings(node, "the graph", self.graph, None, filename,
                                         saver=node.name in saver_nodes, fn_name=None)
        for name, fn in self.library.items():
            nodes = {n.name: n for n in fn.node_def}
            args = {a.name: i for i, a in enumerate(fn.signature.input_arg)}
            where = f"function '{name}'"
            for node in fn.node_def:
                found += self._node_findings(node, where, nodes, args, filename, saver=name in saver_fns, fn_name=name)
            for value in fn.attr.values():
                found += [f"{where} names op {op}" for op in _func_names(value)
                          if op not in self.library and op not in allow.GRAPH_OPS]
        for grad in self.mg.graph_def.library.gradient:
            if grad.gradient_func not in self.library and grad.gradient_func not in allow.GRAPH_OPS:
                found.append(f"gradient of '{grad.function_name}' is op {grad.gradient_func}")
        for obj in self.mg.object_graph_def.nodes:
            if obj.registered_name and obj.registered_name not in allow.REGISTERED_OBJECTS:
                found.append(f"object graph names registered class '{obj.registered_name[:200]}'")
            if obj.registered_saver:
                found.append(f"object graph names registered saver '{obj.registered_saver[:200]}'")
        return found

    def _node_findings(self, node, where: str, nodes: dict, args, filename, *, saver: bool, fn_name) -> list[str]:
        ops = [] if node.op in self.library else [node.op]
        for value in node.attr.values():  # a function attribute naming no library function is an op
            ops += [name for name in _func_names(value) if name not in self.library]
        found = []
        for op in ops:
            if op in allow.GRAPH_OPS:
                continue
            if op in allow.SAVER_OPS and op == node.op:
                if not saver:
                    found.append(f"graph uses op {op} outside the saver in {where}")
                else:
                    found += self._saver_path_findings(where, node, nodes, args, filename, fn_name)
                continue
            found.append(f"graph uses op {op} in {where}")
        return found
