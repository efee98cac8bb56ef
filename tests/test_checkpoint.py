"""core.pth (PyTorch files without torch) and core.checkpoint (weights, the project's own
.npz checkpoints). Files are written with the real torch.save (test-only dependency) in
both of its formats."""
import io
import os
import pickle
import subprocess
import sys
import zipfile
from collections import OrderedDict

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from core.pth import CheckpointError, load_pth, sniff_format  # noqa: E402
from core import checkpoint as ckpt  # noqa: E402
from tests.helpers import (assert_model_has, grad_flags, to_np, torch_state_from,  # noqa: E402
                           tsave)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FORMATS = ["zip", "legacy"]


def assert_same(got, ref, where="<root>"):
    """``got`` (from load_pth) equals ``ref`` (torch.load) value for value, dtype for dtype."""
    if isinstance(ref, torch.Tensor):
        exp = to_np(ref)
        assert isinstance(got, np.ndarray), where
        assert got.dtype == exp.dtype, (where, got.dtype, exp.dtype)
        assert got.shape == exp.shape, (where, got.shape, exp.shape)
        np.testing.assert_array_equal(got, exp, err_msg=where)
    elif isinstance(ref, dict):
        assert isinstance(got, dict) and list(got) == list(ref), where
        for k in ref:
            assert_same(got[k], ref[k], "%s/%s" % (where, k))
    elif isinstance(ref, (list, tuple)):
        assert type(got) is type(ref) and len(got) == len(ref), where
        for i, (a, b) in enumerate(zip(got, ref)):
            assert_same(a, b, "%s/%d" % (where, i))
    elif isinstance(ref, float) and ref != ref:
        assert got != got, where
    else:
        assert got == ref and type(got) is type(ref), (where, got, ref)


def rich_object():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(20, generator=g)
    mat = torch.randn(4, 6, generator=g, dtype=torch.float64)
    return {
        "f32": torch.randn(2, 3, generator=g),
        "f64": mat,
        "f16": torch.randn(5, generator=g).half(),
        "bf16": torch.randn(3, 2, generator=g).bfloat16(),
        "i64": torch.arange(-3, 7),
        "i32": torch.arange(6, dtype=torch.int32).reshape(2, 3),
        "i16": torch.tensor([-2, 5], dtype=torch.int16),
        "i8": torch.tensor([-128, 127], dtype=torch.int8),
        "u8": torch.tensor([0, 255], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "c64": torch.tensor([1 + 2j, -3j], dtype=torch.complex64),
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 4),
        # views: non-contiguous, offsets, several tensors on one storage
        "transposed": mat.t(),
        "strided": mat[:, ::2],
        "slice": base[3:11],
        "view2d": base.view(4, 5)[1:, 2:],
        "base": base,
        "param": torch.nn.Parameter(torch.randn(3, generator=g)),
        "plain": [1, 2.5, "text", None, True, (1, "a"), {"nested": torch.ones(2)}],
    }


@pytest.mark.parametrize("fmt", FORMATS)
def test_roundtrip_values_dtypes_views(tmp_path, fmt):
    obj = rich_object()
    path = tsave(obj, tmp_path / "x.pth", fmt)
    assert sniff_format(path) == ("torch-zip" if fmt == "zip" else "torch-legacy")
    got = load_pth(path)
    assert_same(got, torch.load(path, weights_only=True))
    assert got["bf16"].dtype == np.float32
    assert got["transposed"].flags["C_CONTIGUOUS"]
    # tensors sharing a storage come back with the right values and are independent
    np.testing.assert_array_equal(got["slice"], got["base"][3:11])
    np.testing.assert_array_equal(got["view2d"], got["base"].reshape(4, 5)[1:, 2:])
    got["slice"][0] = 1e6
    assert got["base"][3] != 1e6


@pytest.mark.parametrize("fmt", FORMATS)
def test_state_dict_and_optimizer_state(tmp_path, fmt):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2),
                              torch.nn.Flatten(), torch.nn.Linear(2 * 4 * 4, 3))
    opt = torch.optim.Adam(net.parameters(), lr=2e-4)
    for _ in range(2):
        opt.zero_grad()
        net(torch.randn(4, 1, 6, 6)).sum().backward()
        opt.step()
    obj = {"epoch": 3, "state_dict": net.state_dict(), "optimizer": opt.state_dict(),
           "both": [net.state_dict(), {"o": opt.state_dict()}]}
    path = tsave(obj, tmp_path / "release.pth", fmt)
    got = load_pth(path)
    assert_same(got, torch.load(path, weights_only=True))
    assert isinstance(got["state_dict"], OrderedDict)
    assert sorted(got["optimizer"]["state"]) == [0, 1, 2, 3, 4, 5]
    assert got["optimizer"]["state"][0]["exp_avg"].shape == (2, 1, 3, 3)
    assert got["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)
    assert got["state_dict"]["1.num_batches_tracked"].dtype == np.int64


class _OldStorage:
    """A storage as PyTorch 0.3 pickled it from the GPU (optionally a view of a root)."""

    def __init__(self, key, numel, view=None):
        self.key, self.numel, self.view = key, numel, view


class _OldTensor:
    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, size, stride)

    def __reduce__(self):
        return (torch._utils._rebuild_tensor, self.args)


class _OldPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _OldStorage):
            return ("storage", torch.cuda.FloatStorage, obj.key, "cuda:0", obj.numel,
                    obj.view)
        return None


def write_old_legacy(path, obj, roots):
    """The legacy layout exactly as PyTorch 0.3 wrote it: magic, protocol version,
    sys_info, the tree (persistent ids with view metadata), the key list, then each
    root storage as int64 count + raw little-endian bytes."""
    with open(path, "wb") as f:
        pickle.dump(0x1950A86A20F9469CFC6C, f, protocol=2)
        pickle.dump(1001, f, protocol=2)
        pickle.dump({"protocol_version": 1001, "little_endian": True,
                     "type_sizes": {"short": 2, "int": 4, "long": 8}}, f, protocol=2)
        _OldPickler(f, protocol=2).dump(obj)
        pickle.dump(sorted(roots), f, protocol=2)
        for key in sorted(roots):
            data = np.asarray(roots[key], dtype="<f4")
            f.write(np.int64(data.size).astype("<i8").tobytes())
            f.write(data.tobytes())
    return str(path)


def test_pytorch03_legacy_layout(tmp_path):
    """Hara et al.'s Kinetics files: cuda storages, _rebuild_tensor (v1), storage views."""
    root = np.arange(12, dtype=np.float32)
    whole = _OldStorage("140", 12)
    view = _OldStorage("140", 12, ("141", 4, 6))  # elements 4..9 of the root
    sd = OrderedDict([("module.conv1.weight", _OldTensor(whole, 0, (3, 4), (4, 1))),
                      ("module.fc.weight", _OldTensor(whole, 1, (2, 3), (1, 4))),
                      ("module.fc.bias", _OldTensor(view, 2, (3,), (1,)))])
    path = write_old_legacy(tmp_path / "old.pth",
                            {"epoch": 200, "arch": "resnet-101", "state_dict": sd},
                            {"140": root})
    ref = torch.load(path, weights_only=True, map_location="cpu")
    got = load_pth(path)
    assert got["arch"] == "resnet-101" and got["epoch"] == 200
    np.testing.assert_array_equal(got["state_dict"]["module.conv1.weight"], root.reshape(3, 4))
    # offset 1, size (2, 3), stride (1, 4): element [i, j] is root[1 + i + 4 j]
    np.testing.assert_array_equal(got["state_dict"]["module.fc.weight"],
                                  root[1 + np.add.outer([0, 1], [0, 4, 8])])
    np.testing.assert_array_equal(got["state_dict"]["module.fc.bias"], [6, 7, 8])
    for k in sd:
        np.testing.assert_array_equal(got["state_dict"][k], to_np(ref["state_dict"][k]))


def test_options_namespace(tmp_path):
    import argparse
    opts = argparse.Namespace(lr=2e-4, name="ve8", sizes=[1, 2], device=torch.device("cpu"),
                              shape=torch.Size([2, 3]), dtype=torch.float16, tags={"a"})
    for fmt in FORMATS:
        got = load_pth(tsave({"opts": opts}, tmp_path / ("o%s.pth" % fmt), fmt))["opts"]
        assert got.lr == 2e-4 and got["name"] == "ve8" and got.sizes == [1, 2]
        assert got.device == "cpu" and got.shape == (2, 3) and got.tags == {"a"}
        assert got.dtype.name == "float16"


# --------------------------------------------------------------------------------------
# Refused pickles

class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, ("touch %s" % self.marker,))


def _zip_with_pickle(path, raw, extra=None):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", raw)
        zf.writestr("archive/byteorder", "little")
        for name, data in (extra or {}).items():
            zf.writestr("archive/" + name, data)
    return str(path)


@pytest.mark.parametrize("how", ["torch-zip", "torch-legacy", "raw-zip"])
def test_code_in_pickle_is_refused_and_not_run(tmp_path, how):
    marker = tmp_path / "pwned"
    obj = {"w": torch.ones(2), "evil": _Payload(marker)}
    path = tmp_path / "evil.pth"
    if how == "raw-zip":
        _zip_with_pickle(path, pickle.dumps(_Payload(marker), protocol=2))
    else:
        tsave(obj, path, "zip" if how == "torch-zip" else "legacy")
    with pytest.raises(CheckpointError) as e:
        load_pth(path)
    msg = str(e.value)
    assert str(path) in msg and "posix.system" in msg and "refused" in msg
    assert not marker.exists()
    with pytest.raises(CheckpointError):
        ckpt.read_checkpoint_file(path)
    assert not marker.exists()
    # the payload is real: plain pickle would have run it
    pickle.loads(pickle.dumps(_Payload(marker)))
    assert marker.exists()


def test_other_globals_refused(tmp_path):
    for obj, name in [(torch.nn.Linear(2, 2), "torch.nn.modules.linear.Linear"),
                      (np.ones(2), "numpy"), (eval, "builtins.eval")]:
        path = tsave({"x": obj}, tmp_path / "g.pth", "zip")
        with pytest.raises(CheckpointError, match="refused to load global '%s" % name):
            load_pth(path)


@pytest.mark.parametrize("raw", [
    b"ctorch\nFloatStorage\n(dp0\nVkind\np1\nVBoolStorage\np2\nsb.",
    b"ctorch\nFloatStorage\n(N(dVkind\nVBoolStorage\nstb.",
    b"ctorch._utils\n_rebuild_tensor_v2\n(N(dV__defaults__\n(tstb.",
    b"ctorch\nfloat32\n(N(dVname\nVint8\nstb.",
])
def test_pickle_cannot_alter_allowed_objects(tmp_path, raw):
    """BUILD on an allowed global would poison later loads in the same process."""
    from core import pth
    before = {k: repr(v) for k, v in pth.ALLOWED_GLOBALS.items()}
    kinds = {k: getattr(v, "kind", None) for k, v in pth.ALLOWED_GLOBALS.items()}
    path = _zip_with_pickle(tmp_path / "poison.pth", raw)
    with pytest.raises(CheckpointError, match="refused to set the state"):
        load_pth(path)
    assert {k: repr(v) for k, v in pth.ALLOWED_GLOBALS.items()} == before
    assert {k: getattr(v, "kind", None) for k, v in pth.ALLOWED_GLOBALS.items()} == kinds


class _BadTensor:
    """Pickles as a tensor whose size reads far past its 4-element storage."""

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2,
                (_StorageRef(), 0, (1000,), (1,), False, OrderedDict()))


class _StorageRef:
    pass


class _PidPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _StorageRef):
            return ("storage", torch.FloatStorage, "0", "cpu", 4)
        return None


def test_tensor_past_its_storage_is_refused(tmp_path):
    buf = io.BytesIO()
    _PidPickler(buf, protocol=2).dump({"t": _BadTensor()})
    path = _zip_with_pickle(tmp_path / "oob.pth", buf.getvalue(),
                            {"data/0": np.arange(4, dtype=np.float32).tobytes()})
    with pytest.raises(CheckpointError, match="reads past its storage"):
        load_pth(path)


# --------------------------------------------------------------------------------------
# Broken and foreign files

@pytest.mark.parametrize("fmt", FORMATS)
def test_truncated_files(tmp_path, fmt):
    sd = {"a": torch.randn(64, 64), "b": torch.randn(128)}
    path = tsave(sd, tmp_path / "full.pth", fmt)
    data = open(path, "rb").read()
    for cut in (len(data) // 2, len(data) - 3, 40):
        bad = tmp_path / ("cut%d.pth" % cut)
        bad.write_bytes(data[:cut])
        with pytest.raises(CheckpointError) as e:
            load_pth(bad)
        assert str(bad) in str(e.value) and ("truncated" in str(e.value)
                                             or "corrupt" in str(e.value))
        with pytest.raises(CheckpointError):
            ckpt.read_checkpoint_file(bad)


def test_foreign_and_missing_files(tmp_path):
    text = tmp_path / "notes.pth"
    text.write_text("these are not weights\n")
    with pytest.raises(CheckpointError, match="text file") as e:
        load_pth(text)
    assert str(text) in str(e.value)
    with pytest.raises(CheckpointError, match="no such file"):
        load_pth(tmp_path / "missing.pth")
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty file"):
        load_pth(empty)
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"a": 1}, protocol=2))
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        load_pth(plain)
    other_zip = tmp_path / "other.pth"
    with zipfile.ZipFile(other_zip, "w") as zf:
        zf.writestr("readme.txt", "hi")
    with pytest.raises(CheckpointError, match="no data.pkl"):
        load_pth(other_zip)
    with pytest.raises(CheckpointError, match="directory"):
        load_pth(tmp_path)


# --------------------------------------------------------------------------------------
# Jittor models

@pytest.mark.parametrize("fmt,wrap,prefix", [("zip", True, True), ("legacy", True, False),
                                             ("legacy", False, True), ("zip", False, False)])
def test_load_weights_release_and_bare(tmp_path, make_model, fmt, wrap, prefix):
    model = make_model()
    flags = grad_flags(model)
    assert flags["resnet.0.weight"] is False and flags["av_fc.weight"] is True
    sd = torch_state_from(model, dtype=np.float64 if wrap else None)  # cast to float32
    if prefix:
        sd = OrderedDict(("module." + k, v) for k, v in sd.items())
    obj = {"epoch": 5, "state_dict": sd, "optimizer": {"state": {}, "param_groups": []}} \
        if wrap else sd
    path = tsave(obj, tmp_path / "w.pth", fmt)
    report = ckpt.load_weights(model, path)
    assert report.missing == [] and report.unexpected == [] and report.mismatched == []
    assert len(report.loaded) == len(model.state_dict())
    plain = OrderedDict((k[len("module."):] if prefix else k, v) for k, v in sd.items())
    assert_model_has(model, plain)
    assert grad_flags(model) == flags
    info = ckpt.read_checkpoint_file(path)
    if wrap:
        assert info["meta"] == {"epoch": 5} and info["optimizer"]["param_groups"] == []


def test_load_weights_mismatch_lists_all_keys(tmp_path, make_model):
    model = make_model()
    before = model.state_dict()["av_fc.weight"].numpy().copy()
    sd = torch_state_from(model, seed=1)
    del sd["sa_net.fc.weight"]
    sd["extra.weight"] = torch.zeros(3, 4)
    sd["av_fc.weight"] = torch.zeros(5, 768)
    del sd["conv0.1.num_batches_tracked"]  # one-sided num_batches_tracked is ignored
    path = tsave(sd, tmp_path / "bad.pth", "zip")
    with pytest.raises(ckpt.WeightsMismatchError) as e:
        ckpt.load_weights(model, path)
    msg = str(e.value)
    n = model.n_positions
    assert "sa_net.fc.weight [%d, %d]" % (n, n) in msg
    assert "extra.weight [3, 4]" in msg
    assert "av_fc.weight file [5, 768] vs model [8, 768]" in msg
    assert "num_batches_tracked" not in msg
    assert e.value.missing == ["sa_net.fc.weight"] and e.value.unexpected == ["extra.weight"]
    np.testing.assert_array_equal(model.state_dict()["av_fc.weight"].numpy(), before)

    report = ckpt.load_weights(model, path, strict=False)
    assert report.missing == ["sa_net.fc.weight"]
    assert report.unexpected == ["extra.weight"]
    assert [m[0] for m in report.mismatched] == ["av_fc.weight"]
    np.testing.assert_array_equal(model.state_dict()["av_fc.weight"].numpy(), before)
    assert_model_has(model, sd, ["conv0.0.weight", "resnet.7.0.bn2.running_var"])


# --------------------------------------------------------------------------------------
# The project's own checkpoints

def _umask():
    u = os.umask(0o22)
    os.umask(u)
    return u


def optimizer_state():
    rng = np.random.RandomState(0)
    return {
        "state": {i: {"step": np.array(12.0, np.float32),
                      "exp_avg": rng.standard_normal((3, 2)).astype(np.float32),
                      "exp_avg_sq": rng.random_sample((3, 2))} for i in range(3)},
        "param_groups": [{"lr": 2e-4, "betas": (0.9, 0.999), "eps": 1e-8,
                          "weight_decay": 0, "amsgrad": False, "foreach": None,
                          "params": [0, 1, 2]}],
    }


def test_npz_checkpoint_roundtrip(tmp_path):
    from core.jittor_setup import jt
    sd = OrderedDict([("conv0.0.weight", jt.array(np.arange(6, dtype=np.float32).reshape(2, 3))),
                      ("bn.num_batches_tracked", np.array([4], np.int64)),
                      ("half", np.ones(3, np.float16))])
    meta = {"epoch": 7, "opts": {"lr": 2e-4, "name": "ve8", "sizes": [1, 2, 3]},
            "rng": {"numpy": [1, 2, 3], 5: "five", None: True, 1.5: "x", np.int64(6): 6},
            "nan": float("nan"), "inf": float("-inf"), "scalar": np.float64(2.5)}
    path = tmp_path / "save_7.pth"  # the name does not decide the format
    ckpt.save_checkpoint(path, sd, optimizer_state(), meta)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~_umask()
    with np.load(path, allow_pickle=False) as npz:
        assert "state_dict/conv0.0.weight" in npz.files
        assert "optimizer/state/0/exp_avg" in npz.files
        assert npz["__structure__"].dtype == np.uint8
    out = ckpt.load_checkpoint(path)
    assert list(out["state_dict"]) == list(sd)
    np.testing.assert_array_equal(out["state_dict"]["conv0.0.weight"], sd["conv0.0.weight"].numpy())
    assert out["state_dict"]["bn.num_batches_tracked"].dtype == np.int64
    assert out["state_dict"]["half"].dtype == np.float16
    ref = optimizer_state()
    assert sorted(out["optimizer"]["state"]) == [0, 1, 2]
    for i in range(3):
        for k, v in ref["state"][i].items():
            got = out["optimizer"]["state"][i][k]
            assert got.dtype == v.dtype and got.shape == v.shape
            np.testing.assert_array_equal(got, v)
    assert out["optimizer"]["param_groups"] == ref["param_groups"]
    assert out["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)
    m = out["meta"]
    assert m["epoch"] == 7 and m["opts"] == meta["opts"] and m["rng"] == meta["rng"]
    assert [type(k) for k in m["rng"]] == [str, int, type(None), float, int]
    assert m["nan"] != m["nan"] and m["inf"] == float("-inf") and m["scalar"] == 2.5

    info = ckpt.read_checkpoint_file(path)
    assert info["format"] == "npz" and info["meta"]["epoch"] == 7
    with pytest.raises(CheckpointError, match="npz"):
        load_pth(path)
    with pytest.raises(CheckpointError, match="cannot save a object"):
        ckpt.save_checkpoint(tmp_path / "x.npz", sd, meta={"bad": object()})


def test_npz_checkpoint_loads_into_model(tmp_path, make_model):
    model = make_model()
    src = torch_state_from(model, seed=4)
    ckpt.save_checkpoint(tmp_path / "save_1.npz",
                         OrderedDict((k, to_np(v)) for k, v in src.items()),
                         optimizer_state(), {"epoch": 1})
    other = make_model()
    ckpt.load_weights(other, tmp_path / "save_1.npz")
    assert_model_has(other, src)
    # and back: a model's own state dict of Vars
    ckpt.save_checkpoint(tmp_path / "save_2.npz", other.state_dict())
    third = make_model()
    ckpt.load_weights(third, tmp_path / "save_2.npz")
    assert_model_has(third, src)


def _peak_bytes_saving(path, state, optimizer):
    """The most memory NumPy held at once while ``save_checkpoint`` wrote ``state``."""
    import tracemalloc
    tracemalloc.start()
    try:
        ckpt.save_checkpoint(path, state, optimizer.state_dict())
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_saving_vars_copies_no_weight_or_moment_first(tmp_path, monkeypatch):
    """A model's and Adam's Vars are written from their own memory (a copy of all of it
    first took as long as the writing where new memory is slow): the peak of memory taken
    while saving 32 MB of weights and moments stays far under their size, and the file
    holds their values."""
    from core.jittor_setup import jt
    from core.optimizer import Adam
    rng = np.random.default_rng(0)
    state = OrderedDict((f"w{i}", jt.array(rng.random(400_000, np.float32)))
                        for i in range(8))  # 8 x 1.6 MB, under NumPy's 16 MB write chunks
    params = list(state.values())
    optimizer = Adam(params, lr=1e-3)
    optimizer.step(sum((p * p).sum() for p in params))
    total = 3 * sum(p.numpy().nbytes for p in params)
    assert _peak_bytes_saving(tmp_path / "a.npz", state, optimizer) < total / 4
    out = ckpt.load_checkpoint(tmp_path / "a.npz")
    np.testing.assert_array_equal(out["state_dict"]["w3"], state["w3"].numpy())
    np.testing.assert_array_equal(out["optimizer"]["state"][5]["exp_avg_sq"],
                                  optimizer.exp_avg_sq[5].numpy())
    # control: converting each Var by a copy shows in the measure
    as_copy = ckpt._to_array
    monkeypatch.setattr(ckpt, "_to_array", lambda v: as_copy(v.numpy())
                        if isinstance(v, jt.Var) else as_copy(v))
    assert _peak_bytes_saving(tmp_path / "b.npz", state, optimizer) > total * 0.9


def test_npz_truncated_and_foreign(tmp_path):
    path = tmp_path / "c.npz"
    ckpt.save_checkpoint(path, {"w": np.ones((100, 100), np.float32)}, optimizer_state())
    data = path.read_bytes()
    cut = tmp_path / "cut.npz"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as e:
        ckpt.load_checkpoint(cut)
    assert str(cut) in str(e.value)
    plain = tmp_path / "plain.npz"
    np.savez(plain, a=np.ones(2))
    with pytest.raises(CheckpointError, match="not a checkpoint of this project"):
        ckpt.load_checkpoint(plain)


def test_atomic_write_survives_failure(tmp_path, monkeypatch):
    path = tmp_path / "save_1.pth"
    ckpt.save_checkpoint(path, {"w": np.zeros(1000, np.float32)}, meta={"epoch": 1})
    old = path.read_bytes()

    calls = []
    real = np.lib.format.write_array

    def failing(fp, array, *a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full (simulated)")
        return real(fp, array, *a, **k)

    monkeypatch.setattr(np.lib.format, "write_array", failing)
    with pytest.raises(OSError, match="simulated"):
        ckpt.save_checkpoint(path, {"w": np.ones(1000, np.float32), "v": np.ones(3),
                                    "u": np.ones(3)}, meta={"epoch": 2})
    monkeypatch.undo()
    assert path.read_bytes() == old
    assert sorted(os.listdir(tmp_path)) == ["save_1.pth"]
    assert ckpt.load_checkpoint(path)["meta"] == {"epoch": 1}


def test_atomic_write_survives_killed_process(tmp_path):
    path = tmp_path / "save_1.pth"
    ckpt.save_checkpoint(path, {"w": np.zeros(1000, np.float32)}, meta={"epoch": 1})
    old = path.read_bytes()
    script = (
        "import os, numpy as np\n"
        "from core import checkpoint as c\n"
        "real = np.lib.format.write_array\n"
        "n = [0]\n"
        "def die(fp, a, *x, **k):\n"
        "    n[0] += 1\n"
        "    if n[0] == 2:\n"
        "        os._exit(9)  # the process dies mid-write, no cleanup runs\n"
        "    return real(fp, a, *x, **k)\n"
        "np.lib.format.write_array = die\n"
        "c.save_checkpoint(%r, {'w': np.ones(1000, np.float32), 'v': np.ones(5)},"
        " meta={'epoch': 2})\n" % str(path))
    rc = subprocess.run([sys.executable, "-c", script], cwd=REPO).returncode
    assert rc == 9
    assert path.read_bytes() == old
    assert ckpt.load_checkpoint(path)["meta"] == {"epoch": 1}
    # a normal save afterwards replaces it
    ckpt.save_checkpoint(path, {"w": np.ones(3)}, meta={"epoch": 3})
    assert ckpt.load_checkpoint(path)["meta"] == {"epoch": 3}


class _Weights:
    """What ``Experiment.save`` asks of a model and an optimizer: a ``state_dict()``."""

    def __init__(self, **arrays):
        self.arrays = arrays

    def state_dict(self):
        return dict(self.arrays)


def _save_epoch(experiment, epoch, value, best):
    model, optimizer = _Weights(w=np.full(1000, value, np.float32)), _Weights(step=np.ones(1))
    return experiment.save(epoch, model, optimizer, {"epoch": epoch}, best=best)


def test_best_checkpoint_is_the_epochs_file_under_a_second_name(tmp_path):
    from core.experiment import Experiment
    experiment = Experiment(str(tmp_path / "run"))
    try:
        first = _save_epoch(experiment, 1, 1.0, best=True)
        best = tmp_path / "run" / "best.npz"
        assert os.path.samefile(first, best)  # written once
        second = _save_epoch(experiment, 2, 2.0, best=False)
        # epoch 1 written again (after its evaluation) replaces the file, not its bytes
        _save_epoch(experiment, 1, 3.0, best=False)
        assert not os.path.samefile(first, best)
        assert ckpt.load_checkpoint(best)["state_dict"]["w"][0] == 1.0
        _save_epoch(experiment, 2, 2.0, best=True)
        assert os.path.samefile(second, best)
        assert ckpt.load_checkpoint(best)["state_dict"]["w"][0] == 2.0
        assert not [n for n in os.listdir(tmp_path / "run") if n.endswith(".tmp")]
    finally:
        experiment.close()


@pytest.mark.parametrize("code", ["EXDEV", "EPERM", "EOPNOTSUPP"])
def test_best_checkpoint_is_a_copy_where_there_are_no_hard_links(tmp_path, monkeypatch, code):
    import errno
    from core.experiment import Experiment

    def no_links(src, dst):
        raise OSError(getattr(errno, code), os.strerror(getattr(errno, code)))

    monkeypatch.setattr(os, "link", no_links)
    experiment = Experiment(str(tmp_path / "run"))
    try:
        path = _save_epoch(experiment, 1, 5.0, best=True)
        best = tmp_path / "run" / "best.npz"
        assert not os.path.samefile(path, best)
        assert ckpt.load_checkpoint(best)["state_dict"]["w"][0] == 5.0
        assert sorted(os.listdir(tmp_path / "run")) == ["best.npz", "run.lock", "save_1.npz"]
    finally:
        experiment.close()


def test_link_failure_other_than_missing_hard_links_is_a_write_error(tmp_path, monkeypatch):
    import errno
    from core.atomic_file import WriteError, link_atomically
    src, dst = tmp_path / "a.npz", tmp_path / "b.npz"
    src.write_bytes(b"new")
    dst.write_bytes(b"old")

    def full(src, dst):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "link", full)
    with pytest.raises(WriteError, match="disk is full"):
        link_atomically(str(src), str(dst))
    assert dst.read_bytes() == b"old" and sorted(os.listdir(tmp_path)) == ["a.npz", "b.npz"]
