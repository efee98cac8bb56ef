"""What several test modules share: the tiny model configurations and small helpers.

Fixtures live in ``tests/conftest.py``; this module holds plain values and functions, which
test modules import (``from tests.helpers import TINY``), so that no test module imports
another.
"""
import io
import json
import os
import shutil
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance

from core.checkpoint import load_checkpoint
from datasets.catalog import DATASETS
from datasets.media import find_ffmpeg
from transforms.spatial import corner_crop_box

REPO = Path(__file__).resolve().parents[1]

# ------------------------------------------------------------------ tiny configurations
#: The tests' tiny VAANet as a model configuration (``model.model_config``'s keys): the
#: release's, but a ResNet-10 on 2 snippets of 4 frames of 32 x 32.
TINY = {"dataset": "ve8", "n_classes": 8, "resnet_depth": 10, "seq_len": 2,
        "snippet_duration": 4, "sample_size": 32, "audio_embed_size": 256,
        "audio_n_segments": 16, "fps": 30}
#: Frames of 48 x 48, where a test needs 2 x 2 positions for the spatial attention
#: (training runs, the MPI runs).
TINY_48 = dict(TINY, sample_size=48)
#: The model of the checkpoint and model set-up tests: 8 frames of 64 x 64.
TINY_64 = dict(TINY, snippet_duration=8, sample_size=64)


def network_shape(config):
    """``config``'s options that shape the network (depth, snippets, frames), as
    ``tests.torch_reference.TorchVAANet`` takes them."""
    return {k: config[k] for k in ("resnet_depth", "snippet_duration", "sample_size", "seq_len")}


def network_flags(config):
    """The command-line flags of ``network_shape(config)``."""
    return [s for k, v in network_shape(config).items() for s in (f"--{k}", str(v))]


#: The run flags of the runs under mpirun (on the CPU; one batch of 4 is 2 per rank).
MPI_FLAGS = ["--batch_size", "4", "--n_threads", "0", "--manual_seed", "3", "--no_cuda"]
#: main.py's flags of a tiny training run (test_train.py, test_custom.py).
TRAIN_FLAGS = network_flags(TINY_48) + ["--batch_size", "4", "--learning_rate", "1e-3",
                                        "--n_threads", "2", "--manual_seed", "3"]

# ------------------------------------------------------------------ numbers and files


def rel_l2(x, ref):
    """||x - ref|| / ||ref||, in float64."""
    ref = np.asarray(ref, np.float64)
    return float(np.linalg.norm(np.asarray(x, np.float64) - ref) / np.linalg.norm(ref))


def mtimes(root):
    """{relative path: mtime} of every file under root."""
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in Path(root).rglob("*") if p.is_file()}


# ------------------------------------------------------------------ PyTorch files and weights


def tsave(obj, path, fmt):
    torch.save(obj, str(path), _use_new_zipfile_serialization=(fmt == "zip"))
    return str(path)


def to_np(t):
    t = t.detach()
    if t.dtype == torch.bfloat16:
        t = t.float()
    return t.numpy()


def torch_state_from(model, seed=0, dtype=None):
    """A PyTorch-style state dict (torch tensors) with the model's keys and shapes and
    fresh random values; num_batches_tracked is 0-d int64 as in PyTorch."""
    rng = np.random.RandomState(seed)
    out = OrderedDict()
    for k, v in model.state_dict().items():
        if k.endswith("num_batches_tracked"):
            out[k] = torch.tensor(7, dtype=torch.int64)
        else:
            a = rng.standard_normal(tuple(v.shape)).astype(dtype or np.float32)
            out[k] = torch.from_numpy(a)
    return out


def grad_flags(model):
    return {k: v.requires_grad for k, v in model.state_dict().items()}


def assert_model_has(model, sd, keys=None):
    msd = model.state_dict()
    for k in (keys if keys is not None else sd):
        got = msd[k].numpy()
        exp = np.asarray(to_np(sd[k]) if isinstance(sd[k], torch.Tensor) else sd[k])
        assert got.dtype == np.dtype(str(msd[k].dtype))
        np.testing.assert_allclose(got.reshape(-1), exp.reshape(-1).astype(got.dtype),
                                   err_msg=k)


# ------------------------------------------------------------------ images, frames, sound


def noise(w, h, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), np.uint8))


def natural(w, h, seed=0):
    """uint8 [h, w, 3] of natural-looking content (smooth gradients, edges, noise)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([(x * 255 // max(w - 1, 1)), (y * 255 // max(h - 1, 1)),
                     ((x // 7 + y // 5) % 2) * 200], -1)
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


def jpeg_frame(w, h, seed=0):
    """A decoded JPEG of ``natural`` content."""
    buf = io.BytesIO()
    Image.fromarray(natural(w, h, seed)).save(buf, "JPEG", quality=85)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def make_mp3(path, seconds=1.0, freq=440, rate=44100):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    cmd = [find_ffmpeg(), "-v", "error", "-y", "-f", "lavfi", "-i",
           f"sine=frequency={freq}:duration={seconds}:sample_rate={rate}", "-ac", "1", str(path)]
    subprocess.run(cmd, check=True)


def make_frames(video_dir, n_frames, w=48, h=36, seed=0, n_frames_text=None, same=False):
    os.makedirs(video_dir, exist_ok=True)
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    for i in range(1, n_frames + 1):
        arr = base if same else np.clip(base.astype(int) + 7 * i, 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(os.path.join(video_dir, f"{i:06d}.jpg"), quality=90)
    with open(os.path.join(video_dir, "n_frames"), "w") as f:
        f.write(str(n_frames if n_frames_text is None else n_frames_text))


def reference_eval(img, size):
    """The release's Scale + CenterCrop of a PIL image, computed independently."""
    w, h = img.size
    if min(w, h) != size:
        ow, oh = (size, int(size * h / w)) if w < h else (int(size * w / h), size)
        img = img.resize((ow, oh), Image.BILINEAR)
    w, h = img.size
    cx, cy, half = round(w / 2), round(h / 2), round(size / 2)
    return np.array(img.crop((cx - half, cy - half, cx + half, cy + half)))


def reference_train(img, size, params):
    """The release's training crop, resize and augmentation of a PIL image, independently."""
    box = corner_crop_box(*img.size, params["position"])
    out = img.crop(box).resize((size, size), Image.BILINEAR)
    if params["aug"] == "flip":
        out = out.transpose(Image.FLIP_LEFT_RIGHT)
    elif params["aug"] == "rotate":
        out = out.rotate(params["value"], resample=Image.BILINEAR)
    elif params["aug"] == "brightness":
        out = ImageEnhance.Brightness(out).enhance(params["value"])
    return np.array(out)



# ------------------------------------------------------------------ classes and items


def polarity_mask(dataset, n_classes):
    """Boolean array over the ``n_classes`` classes of a known ``dataset``: True where
    positive."""
    known = sorted(k for k, f in DATASETS.items() if f.classes is not None)
    if dataset not in known:
        raise ValueError(f"no table of classes for dataset {dataset!r}; expected one of {known}")
    mask = DATASETS[dataset].classes.positive_mask()
    if len(mask) != n_classes:
        raise ValueError(f"{dataset} has {len(mask)} classes, not {n_classes}")
    return mask


def snippet_indices(dataset, index):
    """The ``seq_len`` lists of frame indices that item ``index`` of a ``VE8Dataset`` reads
    (drawn as its ``__getitem__`` draws them)."""
    return dataset.recipe.snippets(dataset.data[index]["frame_indices"], dataset._rng(index))

# ------------------------------------------------------------------ mpirun

MPIRUN = shutil.which("mpirun")
NO_MPIRUN = ("mpirun not found (install openmpi-bin and libopenmpi-dev to test "
             "data-parallel runs)")
needs_mpirun = pytest.mark.skipif(MPIRUN is None, reason=NO_MPIRUN)


def mpi_env():
    env = dict(os.environ)
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1", VAANET_NO_CUDA="1",
               PYTHONPATH=str(REPO))
    return env


def mpi_run(args, np_=1, timeout=900, check=True):
    """``python args`` in the repository root, under ``mpirun -np np_`` when ``np_`` > 1;
    with ``check``, an AssertionError showing its output when it fails."""
    cmd = ([MPIRUN, "--oversubscribe", "-np", str(np_)] if np_ > 1 else []) + [sys.executable] + args
    proc = subprocess.run(cmd, cwd=REPO, env=mpi_env(), capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


# ------------------------------------------------------------------ training runs
# (main.py's tiny runs, shared by the training and fault tests)

def train_args(root, results, name, epochs, *extra):
    """main.py's arguments for a run of the tiny configuration (``TRAIN_FLAGS``)."""
    return ["--root_path", str(root), "--result_path", str(results), "--expr_name", name,
            "--n_epochs", str(epochs)] + TRAIN_FLAGS + list(extra)


def mpi_train_args(root, results, name):
    """main.py's arguments for a 2-epoch run under mpirun of the tiny configuration
    (``TINY_48``, ``MPI_FLAGS``, whose ``--n_threads`` the last one overrides: a loader
    worker per rank, as in real runs)."""
    return ["--root_path", str(root), "--result_path", str(results), "--expr_name", name,
            "--n_epochs", "2", "--learning_rate", "1e-3", *network_flags(TINY_48),
            *MPI_FLAGS, "--n_threads", "1"]


def metrics_lines(folder):
    """The records of ``folder``'s metrics.jsonl."""
    with open(os.path.join(folder, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def assert_same_weights(path, reference):
    """The checkpoint ``path`` holds the weights, Adam's moments and the evaluation of the
    checkpoint ``reference``."""
    a, b = load_checkpoint(reference), load_checkpoint(path)
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for k in a["state_dict"]:
        np.testing.assert_allclose(b["state_dict"][k], a["state_dict"][k], rtol=1e-5, atol=1e-7,
                                   err_msg=k)
    for i, state in a["optimizer"]["state"].items():
        np.testing.assert_allclose(b["optimizer"]["state"][i]["exp_avg"], state["exp_avg"],
                                   rtol=1e-5, atol=1e-8)
    for k in ("val_acc", "best_acc", "evaluated", "epoch"):
        assert b["meta"][k] == a["meta"][k], k


def assert_same_run(folder, reference):
    """``folder``'s run ended where the uninterrupted ``reference`` did: save_2.npz and
    the metrics lines."""
    assert_same_weights(folder / "save_2.npz", reference / "save_2.npz")
    assert [(r["epoch"], r["split"]) for r in metrics_lines(folder)] == [
        (1, "train"), (1, "val"), (2, "train"), (2, "val")]
    assert [r["acc"] for r in metrics_lines(folder)] == [r["acc"] for r in metrics_lines(reference)]
