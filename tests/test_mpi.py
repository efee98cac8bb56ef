"""Data-parallel runs under ``mpirun -np 2`` (CPU) against single-process runs.

Real runs via subprocess on the tests' demo dataset (16 training / 8 test videos of 1 s)
and a tiny model (ResNet-10, 2 snippets of 4 frames, 48 x 48: 2 x 2 positions for the spatial attention):

1. the gradient of one global batch of 4 averaged over 2 processes (2 samples each, through
   the optimizer's MPI averaging and BatchNorm over the global batch) is the gradient of
   1 process within twice the PyTorch reference's own float32 gradient noise, while a
   control with per-rank BatchNorm statistics is beyond it on every gradient; one step
   from it leaves the weights and BatchNorm statistics of 1 process on both ranks;
2. ``test.py`` with 2 processes writes the report.json of 1 process;
3. a rank that hits a missing frame ends the whole job (non-zero status; the rank, the
   video, the file and the cause named, no traceback) instead of hanging.

Skipped when ``mpirun`` is not installed.
"""
import json
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import (MPI_FLAGS, TINY_48, mpi_run, needs_mpirun, network_flags,
                           network_shape, rel_l2)

pytestmark = [needs_mpirun, pytest.mark.slow]  # two whole training runs under mpirun

TINY = network_flags(TINY_48) + MPI_FLAGS
LR = 0.1  # with the driver's Adam state, an SGD step of this size
ZERO = 1e-9  # a gradient below this fraction of the largest one is zero up to rounding


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """This module's folder for what its runs write."""
    return tmp_path_factory.mktemp("mpi")


def _group(npz, prefix):
    return {k[len(prefix):]: npz[k] for k in npz.files if k.startswith(prefix)}


@pytest.fixture(scope="module")
def steps(demo_data, work):
    """One training batch from the same weights: 1 process, then 2 processes (with the
    per-rank-BatchNorm control). The bound: twice the PyTorch reference's own worst float32
    gradient noise (distance to float64, the larger of its two CPU convolution backends)
    on the same weights and the same 4 samples, over the gradients that are not zero up to
    rounding."""
    import torch
    from tests.parity_reference import reference_noise
    from tests.torch_reference import TorchVAANet

    torch.manual_seed(0)
    ref = TorchVAANet(**network_shape(TINY_48))
    weights = work / "weights.pth"
    torch.save({"epoch": 1, "state_dict": ref.state_dict()}, weights)
    out = {}
    for np_ in (1, 2):
        prefix = work / f"step{np_}"
        mpi_run(["tests/mpi_train_driver.py", str(prefix), str(weights), "--", "--root_path",
                 str(demo_data), "--result_path", str(work / "results"),
                 "--learning_rate", str(LR), *TINY], np_=np_)
        out[np_] = [np.load(f"{prefix}.rank{k}.npz") for k in range(np_)]
    one = out[1][0]
    ref64, ref32 = reference_noise(ref, one["batch/visual"], one["batch/audio"],
                                   one["batch/target"])
    largest = max(np.linalg.norm(g) for g in ref64["grads"].values())
    zero = sorted(k for k, g in ref64["grads"].items() if np.linalg.norm(g) <= ZERO * largest)
    compared = sorted(k for k in ref64["grads"] if k not in zero)
    return dict(one=one, two=out[2], zero=zero, compared=compared,
                bound=2 * max(ref32["grads"][k] for k in compared),
                stat_bound=max(2 * max(ref32["stats"].values()), 1e-4))


def test_two_processes_compute_the_single_process_gradient(steps):
    """The gradient averaged over 2 ranks (2 samples each) equals the single-process
    gradient of the 4 samples within the bound; with per-rank BatchNorm statistics (the
    control) every gradient is beyond it."""
    one, two, compared, bound = steps["one"], steps["two"], steps["compared"], steps["bound"]
    for key in ("visual", "audio", "target"):  # the two shards are the single batch
        both = np.concatenate([r[f"batch/{key}"] for r in two])
        assert np.array_equal(both, one[f"batch/{key}"]), key
    g1, g2 = _group(one, "grad/"), [_group(r, "grad/") for r in two]
    control = _group(two[0], "control/")
    unused = ["fc.bias", "fc.weight"]  # no gradient at all: Adam holds them, never steps them
    assert sorted(g1) == sorted(g2[0]) == sorted(control) == sorted(
        compared + [k for k in steps["zero"] if k not in unused])
    for k in g1:
        assert np.array_equal(g2[0][k], g2[1][k]), f"{k}: the ranks hold different gradients"
    real = {k: rel_l2(g2[0][k], g1[k]) for k in compared}
    wrong = {k: rel_l2(control[k], g1[k]) for k in compared}
    worst, least = max(real, key=real.get), min(wrong, key=wrong.get)
    print(f"\n{len(compared)} gradients compared; zero up to rounding, skipped: "
          f"{steps['zero']}\nbound (2 x the reference's worst float32 noise): {bound:.2e}\n"
          f"2 ranks vs 1 process: worst {real[worst]:.2e} ({worst})\n"
          f"control, per-rank BatchNorm: smallest {wrong[least]:.2e} ({least}), "
          f"{wrong[least] / bound:.0f} x the bound")
    # the unused fc (as in the release) and the two biases that feed a BatchNorm
    assert steps["zero"] == ["a_fc.0.bias", "conv0.0.bias", "fc.bias", "fc.weight"]
    assert real[worst] <= bound, f"{worst}: {real[worst]:.3g} > {bound:.3g}"
    assert wrong[least] > bound, f"control {least}: {wrong[least]:.3g} <= {bound:.3g}"


def _adam_update(g):
    """The driver's step for gradient ``g``: lr * g / sqrt(1 + g^2)."""
    g = g.astype(np.float64)
    return -LR * g / np.sqrt(1 + g * g)


def test_one_step_leaves_the_weights_of_one_process(steps):
    """After one SGD-like step both ranks hold the same weights; every update equals the
    single process's within the bound (as a doubled gradient's would not), and the
    BatchNorm running statistics are those of the global batch."""
    one, two, bound = steps["one"], steps["two"], steps["bound"]
    init, after1 = _group(one, "init/"), _group(one, "after/")
    after2 = [_group(r, "after/") for r in two]
    assert sorted(after1) == sorted(after2[0]) == sorted(after2[1])
    for k in after1:
        assert np.array_equal(after2[0][k], after2[1][k]), f"{k} differs between the ranks"
    for k in steps["compared"]:
        d1, d2 = after1[k] - init[k].astype(np.float64), after2[0][k] - init[k].astype(np.float64)
        rounding = np.linalg.norm(np.spacing(np.abs(after1[k])))  # of the stored weights
        assert np.linalg.norm(d1) > 100 * rounding, f"{k}: the step is lost in rounding"
        assert np.linalg.norm(d2 - d1) <= bound * np.linalg.norm(d1) + rounding, k
        doubled = _adam_update(2 * one[f"grad/{k}"])
        assert np.linalg.norm(doubled - d1) > bound * np.linalg.norm(d1) + rounding, k
    for k in (k for k in after1 if "running_" in k):
        ref = after1[k].astype(np.float64)
        assert not np.array_equal(ref, init[k]), f"{k} did not move"
        err = np.abs(after2[0][k] - ref).max() / np.abs(ref).max()
        assert err <= steps["stat_bound"], f"{k}: {err:.3g} > {steps['stat_bound']:.3g}"


@pytest.fixture(scope="module")
def checkpoint(mpi_full_run):
    """Epoch 1 of the MPI training run (its resume is test_faults.py's)."""
    return mpi_full_run / "save_1.npz"


def _report(path):
    report = json.loads(Path(path).read_text())
    report.pop("checkpoint", None)
    return report


def _close(a, b, where="report"):
    if isinstance(a, dict):
        assert sorted(a) == sorted(b), where
        for k in a:
            _close(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert b == pytest.approx(a, rel=1e-5, abs=1e-6), where
    else:
        assert a == b, where


def test_test_py_two_processes_gives_the_single_process_report(checkpoint, work):
    out1, out2 = work / "test1", work / "test2"
    mpi_run(["test.py", "--resume_path", str(checkpoint), "--out", str(out1), "--no_progress"])
    proc = mpi_run(["test.py", "--resume_path", str(checkpoint), "--out", str(out2),
                 "--no_progress"], np_=2)
    assert proc.stdout.count("wrote ") == 1  # only rank 0 reports and writes
    r1, r2 = _report(out1 / "report.json"), _report(out2 / "report.json")
    assert r1["n_videos"] == r2["n_videos"] == 8
    _close(r1, r2)
    rows1 = (out1 / "predictions.csv").read_text().splitlines()
    rows2 = (out2 / "predictions.csv").read_text().splitlines()
    assert [r.split(",")[:3] for r in rows1] == [r.split(",")[:3] for r in rows2]


def test_bad_data_on_one_rank_fails_the_wholempi_run(demo_data, checkpoint, work):
    # Copy the dataset, then remove the inner frames of one test video: with batch 4 over 2
    # ranks only one rank loads it, the other would wait for it in a collective.
    broken = work / "broken"
    shutil.copytree(demo_data, broken)
    ann = json.loads((broken / "ve8_01.json").read_text())
    test_ids = [k for k, v in ann["database"].items() if v["subset"] == "validation"]
    victim = test_ids[2]
    label = ann["database"][victim]["annotations"]["label"]
    frames = sorted((broken / "VideoEmotion8--imgs" / label / victim).glob("*.jpg"))
    assert len(frames) > 2
    for f in frames[1:-1]:  # the dataset checks the first and last frames when it loads
        f.unlink()
    start = time.time()
    proc = mpi_run(["test.py", "--resume_path", str(checkpoint), "--root_path", str(broken),
                 "--out", str(work / "test_broken"), "--no_progress", "--n_threads", "0"],
                np_=2,
                timeout=300, check=False)
    err = proc.stdout + proc.stderr
    assert proc.returncode != 0, err[-3000:]
    # Which rank loads the video depends on the loader's order: exactly one of them fails,
    # and says so in a few lines naming the video, the file and the cause, without traceback.
    rank = re.search(r"rank ([01]): test.py: cannot read a sample of the test split:", err)
    assert rank, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith(f"rank {rank.group(1)}: ")]
    assert lines[1].startswith(f"rank {rank.group(1)}:   video  {victim} "), err[-3000:]
    assert f"   file   {broken / 'VideoEmotion8--imgs' / label / victim}/0000" in lines[2]
    assert "   cause  missing: the folder holds 2 frames" in lines[3], err[-3000:]
    assert "Traceback" not in err and "FileNotFoundError" not in err, err[-3000:]
    assert time.time() - start < 300
