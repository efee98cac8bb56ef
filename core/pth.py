"""Read PyTorch ``.pth`` files without torch and without running pickled code.

``load_pth(path)`` understands both formats ``torch.save`` writes:

- the zip format (PyTorch >= 1.6): ``<archive>/data.pkl`` holds the object tree,
  ``<archive>/data/<key>`` the raw bytes of each storage, ``<archive>/byteorder`` the
  byte order ("little" when absent);
- the legacy format (PyTorch < 1.6, or ``_use_new_zipfile_serialization=False``):
  four pickles in a row (magic number, protocol version, sys_info, the object tree),
  a fifth pickle listing the storage keys, then for each key an int64 element count
  followed by the raw bytes of that storage.

In both, storages are referenced through persistent ids
``('storage', storage_type, key, location, numel[, view_metadata])``.

The pickles are read by a restricted unpickler: ``find_class`` only hands out a short
list of harmless callables (see ``ALLOWED_GLOBALS``), all of them implemented here; any
other global (``os.system``, ``builtins.eval``, ``torch.nn.Linear`` ...) stops the
load with a ``CheckpointError`` naming the file and the refused ``module.name``,
before anything is called. Tensors come back as NumPy arrays (C-contiguous copies
with the tensor's dtype, shape and values; bfloat16 becomes float32).
"""
import collections
import os
import pickle
import struct
import zipfile

import numpy as np

__all__ = ["CheckpointError", "load_pth", "sniff_format", "ALLOWED_GLOBALS",
           "TorchDtype", "OptionsNamespace"]

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, malformed, or not allowed to load."""


# --------------------------------------------------------------------------------------
# Storages and tensors

# name of the storage class -> NumPy dtype of its elements ("bfloat16" is kept as raw
# uint16 words and widened to float32 when the tensor is built).
_STORAGE_DTYPES = {
    "DoubleStorage": np.dtype(np.float64),
    "FloatStorage": np.dtype(np.float32),
    "HalfStorage": np.dtype(np.float16),
    "BFloat16Storage": "bfloat16",
    "LongStorage": np.dtype(np.int64),
    "IntStorage": np.dtype(np.int32),
    "ShortStorage": np.dtype(np.int16),
    "CharStorage": np.dtype(np.int8),
    "ByteStorage": np.dtype(np.uint8),
    "BoolStorage": np.dtype(np.bool_),
    "ComplexFloatStorage": np.dtype(np.complex64),
    "ComplexDoubleStorage": np.dtype(np.complex128),
}

_DTYPE_NAMES = {
    "float64": "DoubleStorage", "double": "DoubleStorage",
    "float32": "FloatStorage", "float": "FloatStorage",
    "float16": "HalfStorage", "half": "HalfStorage",
    "bfloat16": "BFloat16Storage",
    "int64": "LongStorage", "long": "LongStorage",
    "int32": "IntStorage", "int": "IntStorage",
    "int16": "ShortStorage", "short": "ShortStorage",
    "int8": "CharStorage", "uint8": "ByteStorage", "bool": "BoolStorage",
    "complex64": "ComplexFloatStorage", "cfloat": "ComplexFloatStorage",
    "complex128": "ComplexDoubleStorage", "cdouble": "ComplexDoubleStorage",
}


def _raw_dtype(kind):
    """dtype of the stored words for a storage kind (bfloat16 -> uint16)."""
    d = _STORAGE_DTYPES[kind]
    return np.dtype(np.uint16) if d == "bfloat16" else d


def _no_build(self, state):
    """BUILD on one of our objects would let a pickle change it after its checks."""
    raise CheckpointError("refused to set the state of a %s" % type(self).__name__)


class _StorageType:
    """Stands for ``torch.FloatStorage`` etc. inside the pickle (a marker, not callable)."""

    __slots__ = ("kind",)
    __setstate__ = _no_build

    def __init__(self, kind):
        self.kind = kind  # key of _STORAGE_DTYPES, or "UntypedStorage"

    def __repr__(self):
        return "<storage type %s>" % self.kind


class TorchDtype:
    """Stands for ``torch.float32`` etc. when a pickle mentions a dtype object."""

    __slots__ = ("name",)
    __setstate__ = _no_build

    def __init__(self, name):
        self.name = name

    @property
    def storage_kind(self):
        return _DTYPE_NAMES.get(self.name)

    def __repr__(self):
        return "torch.%s" % self.name

    def __eq__(self, other):
        return isinstance(other, TorchDtype) and other.name == self.name

    def __hash__(self):
        return hash(("TorchDtype", self.name))


class OptionsNamespace(dict):
    """Harmless stand-in for ``argparse.Namespace`` (a dict that also allows attribute
    access). Pickles of a Namespace (protocol 2+) create it with ``cls.__new__`` and
    fill it with ``__setstate__`` (BUILD), which only stores plain values."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 2:  # (dict, slotstate)
            state = state[0]
        if not isinstance(state, dict):
            raise CheckpointError("argparse.Namespace state is not a dict")
        self.update(state)

    def __reduce__(self):
        return (OptionsNamespace, (), dict(self))


class _Storage:
    """One storage: element kind, element count, and (once read) its raw words."""

    __setstate__ = _no_build

    def __init__(self, kind, numel, key, base=None, offset=0):
        self.kind = kind
        self.numel = int(numel)
        self.key = key
        self.raw = None          # 1-D array of raw words (filled later for legacy files)
        self.base = base         # for legacy storage views: the root storage
        self.offset = int(offset)
        self._array = None

    def array(self):
        """The storage as a 1-D native-order array of its final dtype (cached)."""
        if self._array is None:
            if self.base is not None:
                root = self.base.array()
                self._array = root[self.offset:self.offset + self.numel]
            else:
                if self.raw is None:
                    raise CheckpointError("storage %r has no data" % (self.key,))
                a = self.raw
                if not a.dtype.isnative:
                    a = a.astype(a.dtype.newbyteorder("="))
                if _STORAGE_DTYPES.get(self.kind) == "bfloat16":
                    a = (a.astype(np.uint32) << 16).view(np.float32)
                self._array = a
        return self._array


class _LazyTensor:
    """A tensor whose storage bytes may not be read yet (legacy files put them last)."""

    __setstate__ = _no_build

    def __init__(self, storage, offset, size, stride, requires_grad=False, dtype=None):
        if not isinstance(storage, _Storage):
            raise CheckpointError("tensor rebuilt from a %s, not a storage"
                                  % type(storage).__name__)
        self.storage = storage
        self.offset = _check_int(offset, "storage offset")
        self.size = tuple(_check_int(s, "size") for s in _check_seq(size, "size"))
        self.stride = tuple(_check_int(s, "stride") for s in _check_seq(stride, "stride"))
        if len(self.size) != len(self.stride):
            raise CheckpointError("tensor size %s and stride %s differ in length"
                                  % (self.size, self.stride))
        self.requires_grad = bool(requires_grad)
        self.dtype = dtype  # TorchDtype for untyped storages, else None

    def materialize(self):
        storage = self.storage
        base = storage.array()
        if storage.kind == "UntypedStorage":
            kind = self.dtype.storage_kind if isinstance(self.dtype, TorchDtype) else None
            if kind is None:
                raise CheckpointError("tensor on an untyped storage without a known dtype")
            words = base.view(_raw_dtype(kind)) if len(base) % _raw_dtype(kind).itemsize == 0 \
                else None
            if words is None:
                raise CheckpointError("untyped storage size is not a multiple of the dtype")
            tmp = _Storage(kind, len(words), storage.key)
            tmp.raw = words
            base = tmp.array()
        n = int(np.prod(self.size, dtype=np.int64)) if self.size else 1
        if n == 0:
            return np.empty(self.size, dtype=base.dtype)
        last = self.offset + sum((s - 1) * st for s, st in zip(self.size, self.stride))
        if last >= len(base) or self.offset >= len(base):
            raise CheckpointError(
                "tensor of size %s, stride %s, offset %d reads past its storage of %d "
                "elements" % (self.size, self.stride, self.offset, len(base)))
        item = base.itemsize
        view = np.lib.stride_tricks.as_strided(
            base[self.offset:], shape=self.size,
            strides=tuple(st * item for st in self.stride), writeable=False)
        return np.array(view, copy=True, order="C")


def _check_int(v, what):
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise CheckpointError("invalid tensor %s: %r" % (what, v))
    return v


def _check_seq(v, what):
    if not isinstance(v, (tuple, list)):
        raise CheckpointError("invalid tensor %s: %r" % (what, v))
    return v


# --------------------------------------------------------------------------------------
# The callables a pickle may reach (every one defined here, none of torch's)

def _rebuild_tensor(storage, storage_offset, size, stride):
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    return _LazyTensor(storage, storage_offset, size, stride, requires_grad)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, dtype=None, metadata=None):
    return _LazyTensor(storage, storage_offset, size, stride, requires_grad, dtype)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    return data


def _rebuild_parameter_with_state(data, requires_grad=False, backward_hooks=None,
                                  state=None):
    return data


def _torch_size(*args):
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        args = args[0]
    return tuple(_check_int(a, "torch.Size entry") for a in args)


def _torch_device(*args):
    """``torch.device('cuda', 0)`` -> ``'cuda:0'`` (a plain string)."""
    if not args or not all(isinstance(a, (str, int)) for a in args):
        raise CheckpointError("invalid torch.device arguments %r" % (args,))
    return ":".join(str(a) for a in args)


def _codecs_encode(obj, encoding="utf-8", errors="strict"):
    """Protocol-2 pickles of ``bytes`` call ``_codecs.encode(str, 'latin1')``."""
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1", "utf-8", "utf8",
                                                    "ascii"):
        raise CheckpointError("refused _codecs.encode(%r, %r)" % (type(obj), encoding))
    return obj.encode(encoding, errors)


def _safe_set(items=()):
    return set(items)


def _safe_frozenset(items=()):
    return frozenset(items)


def _safe_slice(*args):
    return slice(*args)


def _safe_complex(real=0.0, imag=0.0):
    if not all(isinstance(x, (int, float)) for x in (real, imag)):
        raise CheckpointError("refused complex(%r, %r)" % (real, imag))
    return complex(real, imag)


class _SafeCallable:
    """Wraps each allowed function: callable, but a pickle cannot BUILD on it (no
    ``__dict__``, ``__setstate__`` refuses), so one file cannot alter the next load."""

    __slots__ = ("_fn",)
    __setstate__ = _no_build

    def __init__(self, fn):
        self._fn = fn

    def __call__(self, *args):
        return self._fn(*args)

    def __repr__(self):
        return "<allowed %s>" % self._fn.__name__


def _build_allowed():
    allowed = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
        ("torch.storage", "UntypedStorage"): _StorageType("UntypedStorage"),
        ("torch", "UntypedStorage"): _StorageType("UntypedStorage"),
        ("torch", "Size"): _torch_size,
        ("torch", "device"): _torch_device,
        ("builtins", "set"): _safe_set,
        ("builtins", "frozenset"): _safe_frozenset,
        ("builtins", "slice"): _safe_slice,
        ("builtins", "complex"): _safe_complex,
        ("_codecs", "encode"): _codecs_encode,
        ("argparse", "Namespace"): OptionsNamespace,
    }
    for key, value in allowed.items():
        if callable(value) and not isinstance(value, type):
            allowed[key] = _SafeCallable(value)
    for kind in _STORAGE_DTYPES:
        allowed[("torch", kind)] = _StorageType(kind)
        allowed[("torch.cuda", kind)] = _StorageType(kind)  # GPU-saved (e.g. Kinetics)
    for name in _DTYPE_NAMES:
        allowed[("torch", name)] = TorchDtype(name)
    return allowed


#: ``(module, name)`` -> the harmless object handed to the unpickler instead.
ALLOWED_GLOBALS = _build_allowed()

_RENAMED_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, path, persistent_load):
        super().__init__(file, encoding="utf-8")
        self._path = path
        self._persistent_load = persistent_load

    def find_class(self, module, name):
        module = _RENAMED_MODULES.get(module, module)
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except (KeyError, TypeError):
            raise CheckpointError(
                "%s: refused to load global '%s.%s' from the pickle (only tensors, "
                "storages and plain containers are allowed; nothing was executed)"
                % (self._path, module, name)) from None

    def persistent_load(self, pid):
        return self._persistent_load(pid)


def _parse_pid(path, pid):
    if not isinstance(pid, tuple) or len(pid) < 5:
        raise CheckpointError("%s: unsupported persistent id %r" % (path, pid))
    typename = pid[0]
    if isinstance(typename, bytes):
        typename = typename.decode("ascii", "replace")
    if typename != "storage":
        raise CheckpointError("%s: unsupported persistent id type %r" % (path, typename))
    stype, key, location, numel = pid[1:5]
    view = pid[5] if len(pid) > 5 else None
    if not isinstance(stype, _StorageType):
        raise CheckpointError("%s: persistent id names no storage type: %r" % (path, stype))
    if isinstance(key, bytes):
        key = key.decode("ascii", "replace")
    if isinstance(numel, bool) or not isinstance(numel, int) or numel < 0:
        raise CheckpointError("%s: invalid storage size %r" % (path, numel))
    return stype.kind, str(key), location, numel, view


def _materialize(obj, memo=None, active=None):
    """Replace every _LazyTensor in a loaded tree by a NumPy array (in place for
    lists/dicts; tuples are rebuilt). Shared objects stay shared."""
    if memo is None:
        memo, active = {}, set()
    oid = id(obj)
    if oid in memo:
        return memo[oid]
    if isinstance(obj, _LazyTensor):
        memo[oid] = obj.materialize()
        return memo[oid]
    if isinstance(obj, dict):
        memo[oid] = obj
        for k in list(obj.keys()):
            obj[k] = _materialize(obj[k], memo, active)
        return obj
    if isinstance(obj, list):
        memo[oid] = obj
        for i, v in enumerate(obj):
            obj[i] = _materialize(v, memo, active)
        return obj
    if isinstance(obj, tuple):
        if oid in active:  # a cycle through a tuple: leave this reference as it is
            return obj
        active.add(oid)
        new = tuple(_materialize(v, memo, active) for v in obj)
        active.discard(oid)
        memo[oid] = new
        return new
    if isinstance(obj, (set, frozenset)):
        return obj
    if isinstance(obj, _Storage):
        memo[oid] = obj.array().copy()
        return memo[oid]
    return obj


# --------------------------------------------------------------------------------------
# Format detection

def _check_file(path):
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError("%s: no such file" % path)
    if os.path.isdir(path):
        raise CheckpointError("%s: is a directory, not a checkpoint file" % path)
    return path


def _describe_unknown(path, head):
    if not head:
        return "%s: empty file, not a checkpoint" % path
    try:
        text = head.decode("utf-8")
        if all(c.isprintable() or c in "\r\n\t" for c in text):
            return ("%s: not a checkpoint (looks like a text file starting with %r)"
                    % (path, text[:40]))
    except UnicodeDecodeError:
        pass
    return "%s: not a checkpoint (unrecognised header %r)" % (path, head[:16])


def sniff_format(path):
    """'torch-zip', 'torch-legacy' or 'npz' from the file's content (not its name);
    CheckpointError for a missing file or anything else."""
    path = _check_file(path)
    with open(path, "rb") as f:
        head = f.read(512)
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            raise CheckpointError("%s: truncated or corrupt zip archive (%s)" % (path, e)) \
                from None
        if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
            return "torch-zip"
        if names and all(n.endswith(".npy") for n in names):
            return "npz"
        raise CheckpointError("%s: a zip archive that is neither a PyTorch checkpoint "
                              "(no data.pkl) nor an .npz checkpoint" % path)
    if head[:1] == b"\x80":
        return "torch-legacy"
    if len(head) > 262 and head[257:262] == b"ustar":
        raise CheckpointError("%s: a tar archive (PyTorch's pre-0.1.10 tar format is not "
                              "supported)" % path)
    raise CheckpointError(_describe_unknown(path, head))


# --------------------------------------------------------------------------------------
# The two formats

def _load_zip(path):
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise CheckpointError("%s: truncated or corrupt zip archive (%s)" % (path, e)) \
            from None
    with zf:
        names = zf.namelist()
        pkls = sorted((n for n in names if n == "data.pkl" or n.endswith("/data.pkl")),
                      key=len)
        if not pkls:
            raise CheckpointError("%s: zip archive without data.pkl: not a PyTorch "
                                  "checkpoint" % path)
        prefix = pkls[0][:-len("data.pkl")]
        order = "little"
        if prefix + "byteorder" in names:
            order = zf.read(prefix + "byteorder").decode("ascii", "replace").strip()
            if order not in ("little", "big"):
                raise CheckpointError("%s: unknown byteorder %r" % (path, order))
        storages = {}

        def persistent_load(pid):
            kind, key, _location, numel, _view = _parse_pid(path, pid)
            if key in storages:
                return storages[key]
            name = prefix + "data/" + key
            try:
                data = zf.read(name)
            except KeyError:
                raise CheckpointError("%s: storage record %r is missing" % (path, name)) \
                    from None
            dt = np.dtype(np.uint8) if kind == "UntypedStorage" else _raw_dtype(kind)
            if order == "big":
                dt = dt.newbyteorder(">")
            count = len(data) // dt.itemsize
            if kind != "UntypedStorage" and count < numel:
                raise CheckpointError("%s: storage %r holds %d bytes, expected %d "
                                      "(truncated?)" % (path, name, len(data),
                                                        numel * dt.itemsize))
            st = _Storage(kind, count, key)
            st.raw = np.frombuffer(data, dtype=dt, count=count)
            storages[key] = st
            return st

        try:
            with zf.open(pkls[0]) as f:
                obj = _RestrictedUnpickler(f, path,
                                           persistent_load).load()
        except CheckpointError:
            raise
        except (zipfile.BadZipFile, EOFError, OSError, pickle.UnpicklingError,
                struct.error) as e:
            raise CheckpointError("%s: truncated or corrupt PyTorch zip checkpoint (%s: %s)"
                                  % (path, type(e).__name__, e)) from None
        except (TypeError, AttributeError, ValueError, IndexError, KeyError) as e:
            raise CheckpointError("%s: malformed pickle in data.pkl (%s: %s)"
                                  % (path, type(e).__name__, e)) from None
    return _finish(path, obj)


def _finish(path, obj):
    try:
        return _materialize(obj)
    except CheckpointError as e:
        raise CheckpointError("%s: %s" % (path, e)) from None
    except RecursionError:
        raise CheckpointError("%s: object tree too deep" % path) from None


def _load_legacy(path):
    with open(path, "rb") as f:
        storages = {}
        read_pickle = _legacy_pickle_reader(f, path)
        little_endian = _read_legacy_header(read_pickle, path)
        obj = read_pickle("object tree", _legacy_persistent_load(path, storages))
        keys = read_pickle("storage key list")
        if not isinstance(keys, list):
            raise CheckpointError("%s: malformed storage key list" % path)
        _read_legacy_storages(f, path, keys, storages, "<" if little_endian else ">")
    return _finish(path, obj)


def _legacy_pickle_reader(f, path):
    """``read_pickle(what, persistent=None)``: loads the next pickle of the open legacy file
    ``f``, any failure a CheckpointError naming ``what`` was being read."""
    def read_pickle(what, persistent=None):
        up = _RestrictedUnpickler(f, path, persistent or _no_persistent(path))
        try:
            return up.load()
        except CheckpointError:
            raise
        except (EOFError, pickle.UnpicklingError, struct.error) as e:
            raise CheckpointError("%s: truncated or corrupt legacy PyTorch checkpoint "
                                  "while reading the %s (%s: %s)"
                                  % (path, what, type(e).__name__, e)) from None
        except (TypeError, AttributeError, ValueError, IndexError, KeyError) as e:
            raise CheckpointError("%s: malformed pickle (%s) (%s: %s)"
                                  % (path, what, type(e).__name__, e)) from None
    return read_pickle


def _read_legacy_header(read_pickle, path):
    """Whether the legacy file's storages are little-endian, from its first three pickles
    (magic number, protocol version, sys_info), which are checked."""
    magic = read_pickle("magic number")
    if magic != MAGIC_NUMBER:
        raise CheckpointError("%s: a pickle file, but not a PyTorch checkpoint (no "
                              "magic number)" % path)
    version = read_pickle("protocol version")
    if version != PROTOCOL_VERSION:
        raise CheckpointError("%s: unsupported PyTorch protocol version %r"
                              % (path, version))
    sys_info = read_pickle("sys_info")
    if isinstance(sys_info, dict):
        return bool(sys_info.get("little_endian", True))
    return True


def _legacy_persistent_load(path, storages):
    """The object tree's ``persistent_load``: the ``_Storage`` (or view of one) a persistent
    id names, kept in ``storages`` by key so that the data can be read into it later."""
    def persistent_load(pid):
        kind, key, _location, numel, view = _parse_pid(path, pid)
        if kind == "UntypedStorage":
            raise CheckpointError("%s: untyped storage in a legacy file" % path)
        root = storages.get(key)
        if root is None:
            root = storages[key] = _Storage(kind, numel, key)
        if view is None:
            return root
        if not (isinstance(view, tuple) and len(view) == 3):
            raise CheckpointError("%s: invalid storage view %r" % (path, view))
        view_key, offset, size = view
        view_key = str(view_key)
        if view_key not in storages:
            _check_int(offset, "storage view offset")
            _check_int(size, "storage view size")
            if offset + size > root.numel:
                raise CheckpointError("%s: storage view past its root" % path)
            storages[view_key] = _Storage(kind, size, view_key, base=root,
                                          offset=offset)
        return storages[view_key]
    return persistent_load


def _read_legacy_storages(f, path, keys, storages, order):
    """Reads the data of the storages ``keys`` lists (each an int64 element count, then
    the raw bytes, in byte ``order`` "<" or ">") from ``f`` into ``storages``; returns
    nothing, and raises CheckpointError unless every root storage got its data."""
    for key in keys:
        key = str(key.decode("ascii") if isinstance(key, bytes) else key)
        st = storages.get(key)
        if st is None or st.base is not None:
            raise CheckpointError("%s: storage %r is listed but never used" % (path, key))
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError("%s: truncated: storage %r has no size field"
                                  % (path, key))
        (count,) = struct.unpack(order + "q", head)
        if count != st.numel:
            raise CheckpointError("%s: storage %r holds %d elements, expected %d"
                                  % (path, key, count, st.numel))
        dt = _raw_dtype(st.kind).newbyteorder(order)
        nbytes = count * dt.itemsize
        data = f.read(nbytes)
        if len(data) < nbytes:
            raise CheckpointError("%s: truncated: storage %r needs %d bytes, only %d "
                                  "left" % (path, key, nbytes, len(data)))
        st.raw = np.frombuffer(data, dtype=dt, count=count)
    for key, st in storages.items():
        if st.base is None and st.raw is None:
            raise CheckpointError("%s: truncated or corrupt: storage %r has no data"
                                  % (path, key))


def _no_persistent(path):
    def refuse(pid):
        raise CheckpointError("%s: unexpected persistent id %r" % (path, pid))
    return refuse


def load_pth(path):
    """Load a ``torch.save`` file (zip or legacy format) without torch and without
    running pickled code. Tensors become NumPy arrays; containers stay dicts,
    OrderedDicts, lists and tuples. Raises CheckpointError (naming ``path``) for a
    missing, truncated, foreign or disallowed file."""
    path = os.fspath(path)
    kind = sniff_format(path)
    if kind == "torch-zip":
        return _load_zip(path)
    if kind == "torch-legacy":
        return _load_legacy(path)
    raise CheckpointError("%s: an .npz archive, not a PyTorch checkpoint (use "
                          "core.checkpoint.load_checkpoint)" % path)
