"""Checkpoints: loading weights into a Jittor model, the pretrained backbones, and the
project's own checkpoint files.

Reading
    ``read_checkpoint_file(path)`` -> ``{'state_dict', 'optimizer', 'meta', 'format'}``
    from any supported file, chosen by content (not by extension):
    PyTorch zip (``PK``), PyTorch legacy (pickle magic) -- both read by ``core.pth``
    without torch and without running pickled code -- or this project's ``.npz``.
    ``load_weights(model, path, strict=True)`` loads a state dict into a model, checking
    keys and shapes (``module.`` prefixes from DataParallel are stripped).

Foreign key names
    ``load_renamed(model, path, prefix_map, dropped, required)`` loads a file whose keys
    differ from the model's by a prefix (the pretrained backbones; which prefixes is
    ``model.py``'s business).

Writing
    ``save_checkpoint(path, state_dict, optimizer=None, meta=None)`` writes an ``.npz``
    that cannot carry code: arrays under flattened keys (``state_dict/<name>``,
    ``optimizer/state/0/exp_avg``...) and everything else as one JSON document (entry
    ``__structure__``, a uint8 array). It is written to a temporary file in the same
    folder, fsynced, then renamed over ``path``, so ``path`` always holds either the
    old or the new complete file. ``load_checkpoint(path)`` reads it back with
    ``np.load(allow_pickle=False)``.
"""
import json
import math
import os
import sys
import zipfile
from collections import OrderedDict, namedtuple

import numpy as np

from core.atomic_file import write_atomically
from core.pth import CheckpointError, load_pth, sniff_format

__all__ = [
    "CheckpointError", "WeightsMismatchError", "LoadReport",
    "read_checkpoint_file", "load_weights", "load_state_dict_into", "load_renamed",
    "trained_epochs", "save_checkpoint", "load_checkpoint", "flatten_tree", "unflatten_tree",
]

#: What load_weights and the adapters return.
LoadReport = namedtuple("LoadReport", "loaded missing unexpected mismatched")


class WeightsMismatchError(CheckpointError):
    """State dict and model disagree; ``missing``, ``unexpected`` and ``mismatched``
    (``(key, file_shape, model_shape)``) list every offending key."""

    def __init__(self, message, missing=(), unexpected=(), mismatched=()):
        super().__init__(message)
        self.missing = list(missing)
        self.unexpected = list(unexpected)
        self.mismatched = list(mismatched)


# --------------------------------------------------------------------------------------
# Reading any supported file

def _is_array(v):
    return isinstance(v, np.ndarray)


def _looks_like_state_dict(obj):
    return (isinstance(obj, dict) and len(obj) > 0
            and all(isinstance(k, str) for k in obj)
            and all(_is_array(v) for v in obj.values()))


def read_checkpoint_file(path):
    """Read a PyTorch (.pth zip or legacy) or project (.npz) checkpoint, whatever its
    name. Returns ``dict(state_dict=..., optimizer=..., meta=..., format=...)`` where
    ``state_dict`` maps names to NumPy arrays; ``meta`` holds the file's other entries
    (``epoch``, ``arch``...). A release file ``{'state_dict', 'epoch', 'optimizer'}``
    and a bare state dict are both accepted."""
    path = os.fspath(path)
    fmt = sniff_format(path)
    if fmt == "npz":
        out = load_checkpoint(path)
        out["format"] = fmt
        return out
    obj = load_pth(path)
    if isinstance(obj, dict) and "state_dict" in obj:
        sd = obj["state_dict"]
        if not _looks_like_state_dict(sd):
            raise CheckpointError("%s: 'state_dict' entry is not a mapping of names to "
                                  "tensors" % path)
        meta = {k: v for k, v in obj.items() if k not in ("state_dict", "optimizer")}
        return dict(state_dict=OrderedDict(sd), optimizer=obj.get("optimizer"),
                    meta=meta, format=fmt)
    if _looks_like_state_dict(obj):
        return dict(state_dict=OrderedDict(obj), optimizer=None, meta={}, format=fmt)
    raise CheckpointError("%s: holds no state dict (a %s%s)" % (
        path, type(obj).__name__,
        " with keys %s" % sorted(map(str, obj))[:10] if isinstance(obj, dict) else ""))


def _state_dict_from(source):
    """A state dict from a path or an already loaded mapping."""
    if isinstance(source, dict):
        return OrderedDict(source), "<state dict>"
    return read_checkpoint_file(source)["state_dict"], os.fspath(source)


def _strip_module_prefix(sd, model_keys):
    """Drop DataParallel's ``module.`` prefix when every key carries it and the model's
    keys do not."""
    p = "module."
    if sd and all(k.startswith(p) for k in sd) and not all(k.startswith(p) for k in model_keys):
        return OrderedDict((k[len(p):], v) for k, v in sd.items())
    return sd


# --------------------------------------------------------------------------------------
# Loading into a Jittor model

def _shape(v):
    return tuple(int(s) for s in v.shape)


def _is_nbt(key):
    return key.endswith("num_batches_tracked")


def _compatible(key, value_shape, var_shape):
    if value_shape == var_shape:
        return True
    # PyTorch keeps num_batches_tracked as a 0-d tensor, the port as shape [1].
    return _is_nbt(key) and int(np.prod(value_shape)) == int(np.prod(var_shape)) == 1


def _fmt_shape(s):
    return "[" + ", ".join(str(x) for x in s) + "]"


def _mismatch_message(where, missing, unexpected, mismatched, model_vars, sd, limit=None):
    parts = []
    if missing:
        parts.append("missing in the file (%d): %s" % (len(missing), ", ".join(
            "%s %s" % (k, _fmt_shape(_shape(model_vars[k]))) for k in missing)))
    if unexpected:
        parts.append("unexpected in the file (%d): %s" % (len(unexpected), ", ".join(
            "%s %s" % (k, _fmt_shape(_shape(sd[k]))) for k in unexpected)))
    if mismatched:
        parts.append("shape mismatch (%d): %s" % (len(mismatched), ", ".join(
            "%s file %s vs model %s" % (k, _fmt_shape(a), _fmt_shape(b))
            for k, a, b in mismatched)))
    return "%s does not match the model: %s" % (where, "; ".join(parts))


def _assign(var, value):
    """Copy ``value`` into the Jittor Var in place, cast to its dtype and shape; keeps
    the Var object (so optimizers holding it keep working) and its requires_grad."""
    from core.jittor_setup import jt
    arr = np.asarray(value)
    target = np.dtype(str(var.dtype))
    arr = np.ascontiguousarray(arr.astype(target, copy=False).reshape(_shape(var)))
    requires_grad = var.requires_grad
    var.update(jt.array(arr))
    var.sync(False, False)
    if var.requires_grad != requires_grad:  # never expected; keep the model's choice
        var.requires_grad = requires_grad


def load_state_dict_into(model, sd, strict=True, where="state dict", check_keys=None):
    """Check ``sd`` (name -> array) against ``model.state_dict()`` and copy it in.

    ``check_keys``: the model keys that must be filled (default: all). Keys ending in
    ``num_batches_tracked`` that exist on one side only are ignored. With
    ``strict=True`` any missing/unexpected key or shape mismatch raises one
    WeightsMismatchError listing all of them, and nothing is loaded; with
    ``strict=False`` the matching keys are loaded and the rest reported."""
    model_vars = model.state_dict()
    sd = _strip_module_prefix(OrderedDict(sd), list(model_vars))
    required = list(model_vars) if check_keys is None else list(check_keys)
    missing = [k for k in required if k not in sd and not _is_nbt(k)]
    unexpected = [k for k in sd if k not in model_vars and not _is_nbt(k)]
    mismatched = []
    to_load = []
    for k, v in sd.items():
        if k not in model_vars:
            continue
        if not _is_array(v):
            try:
                v = np.asarray(v)
            except Exception:  # noqa: BLE001
                v = None
            if v is None or v.dtype == object:
                mismatched.append((k, ("not an array",), _shape(model_vars[k])))
                continue
        if _compatible(k, _shape(v), _shape(model_vars[k])):
            to_load.append((k, v))
        else:
            mismatched.append((k, _shape(v), _shape(model_vars[k])))
    if strict and (missing or unexpected or mismatched):
        raise WeightsMismatchError(
            _mismatch_message(where, missing, unexpected, mismatched, model_vars, sd),
            missing, unexpected, mismatched)
    for k, v in to_load:
        _assign(model_vars[k], v)
    return LoadReport([k for k, _ in to_load], missing, unexpected, mismatched)


def load_weights(model, path, strict=True):
    """Load weights from ``path`` (release checkpoint, bare state dict, ``module.``
    prefixed keys, zip or legacy .pth, or this project's .npz) into the Jittor
    ``model``. Returns LoadReport(loaded, missing, unexpected, mismatched)."""
    sd, where = _state_dict_from(path)
    return load_state_dict_into(model, sd, strict=strict, where=where)


# --------------------------------------------------------------------------------------
# Foreign checkpoints whose keys are named differently

def load_renamed(model, path, prefix_map, dropped=(), required=None, what="weights"):
    """Load a state dict whose key prefixes differ from the model's (a pretrained backbone).

    Every key of the file (``module.`` of DataParallel stripped) either starts with one of
    ``dropped`` (not used) or with a key of ``prefix_map``, which is replaced by its value;
    any other key is an error. Every model key in ``required`` must be filled with the
    right shape (WeightsMismatchError lists every problem, and nothing is loaded); model
    keys outside ``required`` are left as they are. Returns a LoadReport."""
    sd, where = _state_dict_from(path)
    if sd and all(k.startswith("module.") for k in sd):  # saved from DataParallel
        sd = OrderedDict((k[len("module."):], v) for k, v in sd.items())
    mapped, unknown = OrderedDict(), []
    for k, v in sd.items():
        if k.startswith(tuple(dropped)):
            continue
        for src, dst in prefix_map.items():
            if k.startswith(src):
                mapped[dst + k[len(src):]] = v
                break
        else:
            unknown.append(k)
    if unknown:
        raise WeightsMismatchError(
            "%s (%s): keys with no place in the model: %s"
            % (where, what, ", ".join("%s %s" % (k, _fmt_shape(_shape(sd[k])))
                                      for k in unknown)), unexpected=unknown)
    return load_state_dict_into(model, mapped, strict=True,
                                where="%s (%s)" % (where, what), check_keys=required)


def trained_epochs(meta):
    """The epoch a checkpoint was saved after, or None when it does not say. Its meta's
    ``epoch`` is the next epoch to run, as the release stores it: save_3 holds 4."""
    epoch = (meta or {}).get("epoch")
    try:
        return int(epoch) - 1
    except (TypeError, ValueError):
        return None


# --------------------------------------------------------------------------------------
# The project's own checkpoints (.npz + JSON, no pickle)

FORMAT_NAME = "vaanet-jittor-checkpoint"
FORMAT_VERSION = 1
STRUCTURE_KEY = "__structure__"
_JSON_SCALARS = (str, int, float, bool, type(None))


def _to_array(v):
    """ndarray for arrays, NumPy scalars and Jittor Vars; None for anything else. A Var in
    CPU memory comes as a view of its data, not a copy: a checkpoint is written at once,
    and a copy of every weight and moment first (200 MB in the demo) cost as much time as
    the writing itself where new memory is slow to come by (a virtual machine's)."""
    if isinstance(v, np.ndarray):
        return v
    if isinstance(v, np.generic):
        return np.asarray(v)
    jittor = sys.modules.get("jittor")  # a Var exists only once Jittor is imported
    if jittor is not None and isinstance(v, jittor.Var):
        return np.asarray(v.numpy() if jittor.flags.use_cuda else v.data)
    return None


def flatten_tree(tree):
    """``tree`` (nested dicts/lists/tuples of arrays and plain values) -> ``(skeleton,
    arrays)``: ``arrays`` maps readable names (``state_dict/conv0.0.weight``) to arrays,
    ``skeleton`` is JSON-ready and refers to them. Dict keys keep their type (str, int,
    float, bool, None)."""
    arrays = OrderedDict()

    def name_for(path):
        base = "/".join(str(p) for p in path) or "value"
        name, i = base, 1
        while name in arrays or name == STRUCTURE_KEY:
            name = "%s~%d" % (base, i)
            i += 1
        return name

    def walk(v, path, depth):
        if depth > 100:
            raise CheckpointError("checkpoint tree too deep at %s" % "/".join(map(str, path)))
        arr = _to_array(v)
        if arr is not None:
            if arr.dtype.hasobject:
                raise CheckpointError("cannot save an object array at %s"
                                      % "/".join(map(str, path)))
            name = name_for(path)
            arrays[name] = arr
            return {"__array__": name}
        if isinstance(v, bool) or v is None or isinstance(v, str):
            return v
        if isinstance(v, int):
            return int(v)
        if isinstance(v, float):
            if math.isfinite(v):
                return float(v)
            return {"__float__": repr(float(v))}  # nan, inf, -inf
        if isinstance(v, dict):
            items = []
            for k, x in v.items():
                if isinstance(k, np.generic) and not isinstance(k, (np.str_, np.bytes_)):
                    k = k.item()  # NumPy int/float/bool keys become plain ones
                if not isinstance(k, _JSON_SCALARS) or (isinstance(k, float)
                                                        and not math.isfinite(k)):
                    raise CheckpointError("cannot save dict key %r (%s) at %s" % (
                        k, type(k).__name__, "/".join(map(str, path))))
                items.append([k, walk(x, path + [k], depth + 1)])
            return {"__dict__": items}
        if isinstance(v, tuple):
            return {"__tuple__": [walk(x, path + [i], depth + 1) for i, x in enumerate(v)]}
        if isinstance(v, list):
            return [walk(x, path + [i], depth + 1) for i, x in enumerate(v)]
        raise CheckpointError("cannot save a %s at %s (only arrays, Jittor Vars, numbers, "
                              "strings, None, lists, tuples and dicts)"
                              % (type(v).__name__, "/".join(map(str, path)) or "<root>"))

    return walk(tree, [], 0), arrays


def unflatten_tree(skeleton, arrays):
    """Inverse of flatten_tree: ``arrays`` is any mapping name -> array."""
    def walk(s):
        if isinstance(s, list):
            return [walk(x) for x in s]
        if isinstance(s, dict):
            if set(s) == {"__array__"}:
                try:
                    return arrays[s["__array__"]]
                except KeyError:
                    raise CheckpointError("array %r is missing" % s["__array__"]) from None
            if set(s) == {"__dict__"}:
                return OrderedDict((k, walk(x)) for k, x in s["__dict__"])
            if set(s) == {"__tuple__"}:
                return tuple(walk(x) for x in s["__tuple__"])
            if set(s) == {"__float__"}:
                return float(s["__float__"])
            raise CheckpointError("malformed checkpoint structure %r" % sorted(s))
        return s
    return walk(skeleton)


def _write_npz(f, arrays):
    """Write ``arrays`` into the open binary file ``f`` in NumPy's .npz layout (a zip
    of .npy files), refusing anything that would need pickle."""
    with zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_STORED,
                         allowZip64=True) as zf:
        for name, arr in arrays.items():
            with zf.open(name + ".npy", "w", force_zip64=True) as entry:
                np.lib.format.write_array(entry, np.asanyarray(arr), allow_pickle=False)


def save_checkpoint(path, state_dict, optimizer=None, meta=None):
    """Atomically write ``{state_dict, optimizer, meta}`` to ``path`` as a pickle-free
    .npz (values of ``state_dict`` may be Jittor Vars or arrays; ``optimizer`` and
    ``meta`` nested dicts/lists of arrays and plain values)."""
    path = os.fspath(path)
    tree = OrderedDict([("state_dict", OrderedDict(state_dict)), ("optimizer", optimizer),
                        ("meta", meta)])
    skeleton, arrays = flatten_tree(tree)
    doc = json.dumps({"format": FORMAT_NAME, "version": FORMAT_VERSION, "tree": skeleton},
                     allow_nan=False)
    arrays[STRUCTURE_KEY] = np.frombuffer(doc.encode("utf-8"), dtype=np.uint8)
    return write_atomically(path, lambda f: _write_npz(f, arrays), durable=True)


def load_checkpoint(path):
    """Read a file written by save_checkpoint -> ``dict(state_dict, optimizer, meta)``
    (arrays as NumPy arrays, int dict keys as ints). Never unpickles."""
    path = os.fspath(path)
    fmt = sniff_format(path)
    if fmt != "npz":
        raise CheckpointError("%s: a PyTorch checkpoint, not this project's .npz (use "
                              "read_checkpoint_file)" % path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            if STRUCTURE_KEY not in npz.files:
                raise CheckpointError("%s: an .npz without %s: not a checkpoint of this "
                                      "project" % (path, STRUCTURE_KEY))
            doc = json.loads(bytes(npz[STRUCTURE_KEY]).decode("utf-8"))
            if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
                raise CheckpointError("%s: unknown checkpoint format" % path)
            if doc.get("version") != FORMAT_VERSION:
                raise CheckpointError("%s: unsupported checkpoint version %r"
                                      % (path, doc.get("version")))
            arrays = {name: npz[name] for name in npz.files if name != STRUCTURE_KEY}
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError,
            RecursionError) as e:
        raise CheckpointError("%s: truncated, corrupt or disallowed checkpoint content "
                              "(%s: %s)" % (path, type(e).__name__, e)) from None
    try:
        tree = unflatten_tree(doc.get("tree"), arrays)
    except CheckpointError as e:
        raise CheckpointError("%s: %s" % (path, e)) from None
    except (RecursionError, TypeError, ValueError) as e:
        raise CheckpointError("%s: malformed checkpoint structure (%s: %s)"
                              % (path, type(e).__name__, e)) from None
    if not isinstance(tree, dict) or "state_dict" not in tree:
        raise CheckpointError("%s: checkpoint without a state_dict" % path)
    return dict(state_dict=tree["state_dict"], optimizer=tree.get("optimizer"),
                meta=tree.get("meta"))
