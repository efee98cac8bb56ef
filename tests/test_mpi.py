"""Data-parallel runs under ``mpirun -np 2`` (CPU) against single-process runs.

Real runs via subprocess on a tiny prepared dataset (8 training / 8 test videos of 1 s)
and a tiny model (ResNet-10, 2 snippets of 4 frames, 32 x 32):

1. two training steps (global batch 4) with 2 processes give the parameters (and
   BatchNorm running statistics) of 1 process, and both ranks hold identical ones;
2. ``test.py`` with 2 processes writes the report.json of 1 process;
3. a rank that hits a missing frame ends the whole job (non-zero status; the rank, the
   video, the file and the cause named, no traceback) instead of hanging.

Skipped when ``mpirun`` is not installed.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
MPIRUN = shutil.which("mpirun")

pytestmark = pytest.mark.skipif(MPIRUN is None, reason="mpirun not found (install openmpi-bin "
                                "and libopenmpi-dev to test data-parallel runs)")

TINY = ["--resnet_depth", "10", "--snippet_duration", "4", "--sample_size", "32",
        "--seq_len", "2", "--batch_size", "4", "--n_threads", "0", "--manual_seed", "3",
        "--no_cuda"]
TIMEOUT = 420
LR = 1e-6  # training steps of the comparison


def _env():
    env = dict(os.environ)
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1", VAANET_NO_CUDA="1",
               PYTHONPATH=str(ROOT))
    return env


def _run(args, np_=1, timeout=TIMEOUT, check=True):
    cmd = ([MPIRUN, "--oversubscribe", "-np", str(np_)] if np_ > 1 else []) + [PY] + args
    proc = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    base = tmp_path_factory.mktemp("mpi")
    raw, root = base / "raw", base / "data"
    _run(["tools/make_demo_dataset.py", "--dst", str(raw), "--per_class_train", "1",
          "--per_class_test", "1", "--seconds", "1", "--no_progress"])
    _run(["tools/prepare_dataset.py", "--src", str(raw), "--dst", str(root),
          "--split_dir", str(raw / "splits"), "--no_progress"])
    return base


def _train(base, name, np_):
    prefix = base / name
    proc = _run(["tests/mpi_train_driver.py", str(prefix), "--", "--root_path",
                 str(base / "data"), "--result_path", str(base / "results"),
                 "--learning_rate", str(LR), *TINY], np_=np_)
    return [dict(np.load(f"{prefix}.rank{k}.npz")) for k in range(np_)], proc


def test_two_processes_train_like_one(data_root):
    (one,), _ = _train(data_root, "one", 1)
    two, _ = _train(data_root, "two", 2)
    t1, t2 = one.pop("__step_times__"), two[0].pop("__step_times__")
    two[1].pop("__step_times__")
    assert len(t1) == len(t2) == 2  # 8 training videos, global batch 4
    print(f"\nstep time (tiny config, after compilation): 1 process {t1[-1]:.2f}s, "
          f"2 processes {t2[-1]:.2f}s")
    assert sorted(one) == sorted(two[0]) == sorted(two[1])
    # Adam's first steps move every weight by about +-lr whatever the gradient's size, so
    # a gradient that is zero up to rounding (the bias of a conv followed by BatchNorm)
    # moves by +-lr in either run: allow 2 steps x 2 lr on top of 1e-4 relative.
    worst = (0.0, "")
    for k in one:
        assert np.array_equal(two[0][k], two[1][k]), f"{k} differs between the ranks"
        a, b = one[k].astype(np.float64), two[0][k].astype(np.float64)
        excess = np.abs(a - b).max() - 4 * LR
        rel = max(excess, 0.0) / max(np.abs(a).max(), 1e-6)
        worst = max(worst, (rel, k))
    assert worst[0] < 1e-4, f"{worst[1]}: relative difference {worst[0]:.3g}"
    # BatchNorm statistics really came from the global batch (they moved).
    moved = [k for k in one if k.endswith("running_mean") and np.abs(one[k]).max() > 0]
    assert moved


@pytest.fixture(scope="module")
def checkpoint(data_root):
    _run(["main.py", "--root_path", str(data_root / "data"), "--result_path",
          str(data_root / "results"), "--expr_name", "one", "--n_epochs", "1",
          "--learning_rate", "1e-3", *TINY])
    ckpt = data_root / "results" / "one" / "save_1.npz"
    assert ckpt.is_file()
    return ckpt


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


def test_test_py_two_processes_gives_the_single_process_report(data_root, checkpoint):
    out1, out2 = data_root / "test1", data_root / "test2"
    _run(["test.py", "--resume_path", str(checkpoint), "--out", str(out1), "--no_progress"])
    proc = _run(["test.py", "--resume_path", str(checkpoint), "--out", str(out2),
                 "--no_progress"], np_=2)
    assert proc.stdout.count("wrote ") == 1  # only rank 0 reports and writes
    r1, r2 = _report(out1 / "report.json"), _report(out2 / "report.json")
    assert r1["n_videos"] == r2["n_videos"] == 8
    _close(r1, r2)
    rows1 = (out1 / "predictions.csv").read_text().splitlines()
    rows2 = (out2 / "predictions.csv").read_text().splitlines()
    assert [r.split(",")[:3] for r in rows1] == [r.split(",")[:3] for r in rows2]


def test_bad_data_on_one_rank_fails_the_whole_run(data_root, checkpoint):
    # Copy the dataset, then remove the inner frames of one test video: with batch 4 over 2
    # ranks only one rank loads it, the other would wait for it in a collective.
    broken = data_root / "broken"
    shutil.copytree(data_root / "data", broken)
    ann = json.loads((broken / "ve8_01.json").read_text())
    test_ids = [k for k, v in ann["database"].items() if v["subset"] == "validation"]
    victim = test_ids[2]
    label = ann["database"][victim]["annotations"]["label"]
    frames = sorted((broken / "VideoEmotion8--imgs" / label / victim).glob("*.jpg"))
    assert len(frames) > 2
    for f in frames[1:-1]:  # the dataset checks the first and last frames when it loads
        f.unlink()
    start = time.time()
    proc = _run(["test.py", "--resume_path", str(checkpoint), "--root_path", str(broken),
                 "--out", str(data_root / "test_broken"), "--no_progress", "--n_threads", "0"],
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
