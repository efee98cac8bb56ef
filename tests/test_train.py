"""main.py end to end on the tiny demo dataset: learning, exact resume, safety, and what a
checkpoint carries to test.py."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import main as train_main
from core.checkpoint import load_checkpoint
from tests.helpers import assert_same_run, metrics_lines, train_args

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def data_root(demo_data):
    return demo_data


def test_two_epochs_write_everything_and_loss_goes_down(full_run):
    names = set(os.listdir(full_run))
    assert {"save_1.npz", "save_2.npz", "best.npz", "metrics.jsonl", "opts.json",
            "curves.png"} <= names
    lines = metrics_lines(full_run)
    assert [(r["epoch"], r["split"]) for r in lines] == [
        (1, "train"), (1, "val"), (2, "train"), (2, "val")]
    train = [r["loss"] for r in lines if r["split"] == "train"]
    assert train[1] < train[0]
    ckpt = load_checkpoint(full_run / "save_2.npz")
    assert ckpt["meta"]["epoch"] == 3  # the next epoch to run, as the release stores it
    assert ckpt["optimizer"]["state"][0]["step"] == 8.0  # 16 videos / batch 4, two epochs


def test_checkpoint_carries_classes_and_options_as_given(data_root, full_run):
    from datasets.catalog import DATASETS
    meta = load_checkpoint(full_run / "save_2.npz")["meta"]
    ve8 = DATASETS["ve8"].classes
    assert meta["labels"] == list(ve8.names) and meta["positive_classes"] == list(ve8.positive)
    opts = meta["opts"]
    # the options as parsed: root_path as given, the dataset paths not joined to it
    assert opts["root_path"] == str(data_root) and opts["video_path"] is None
    assert opts["audio_cache"] == "mfcc_cache" and opts["n_classes"] is None
    assert (opts["resnet_depth"], opts["seq_len"], opts["sample_size"]) == (10, 2, 48)
    # opts.json records what ran, paths resolved
    with open(full_run / "opts.json") as f:
        ran = json.load(f)
    assert ran["video_path"] == os.path.join(str(data_root), DATASETS["ve8"].frames_folder)
    assert ran["class_names"] == list(ve8.names)


def test_test_py_follows_a_moved_dataset(data_root, full_run, tmp_path):
    """test.py takes the configuration from the checkpoint; --root_path alone moves the
    data, since the checkpoint's dataset paths are relative to its root."""
    moved = tmp_path / "elsewhere"
    moved.symlink_to(data_root, target_is_directory=True)
    out = tmp_path / "eval"
    proc = subprocess.run([sys.executable, "test.py", "--resume_path", str(full_run / "save_2.npz"),
                           "--root_path", str(moved), "--out", str(out), "--n_threads", "2",
                           "--no_progress"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "subnormal" not in proc.stderr  # NumPy's warning, neither here nor in the workers
    report = json.loads((out / "report.json").read_text())
    assert report["annotation_path"].startswith(str(moved))
    assert report["checkpoint_epoch"] == 2 and report["n_videos"] == 8
    assert report["config"]["seq_len"] == 2 and report["config"]["sample_size"] == 48
    assert report["polarity_accuracy"] is not None

def test_resume_after_epoch_1_equals_uninterrupted_run(data_root, full_run, tmp_path):
    assert train_main.main(train_args(data_root, tmp_path, "part", 1)) == 0
    part = tmp_path / "part"
    assert train_main.main(train_args(data_root, tmp_path, "part", 2, "--resume_path", str(part))) == 0
    assert_same_run(part, full_run)


def test_existing_experiment_is_never_overwritten(data_root, full_run, capsys, monkeypatch):
    from core import entry
    asked = []
    monkeypatch.setattr(entry, "choose_device", asked.append)
    before = {n: os.path.getmtime(full_run / n) for n in os.listdir(full_run)}
    assert train_main.main(train_args(data_root, full_run.parent, "full", 1, "--no_cuda")) == 2
    assert "already holds an experiment" in capsys.readouterr().err
    assert {n: os.path.getmtime(full_run / n) for n in os.listdir(full_run)} == before
    assert asked == [True]  # --no_cuda from main(argv), not from sys.argv


def test_nan_loss_stops_and_keeps_last_good_checkpoint(data_root, tmp_path, monkeypatch, capsys):
    import core.loss

    real = core.loss.get_loss

    def poisoned(opt):
        criterion = real(opt)
        calls = {"n": 0}

        def loss(logits, target):
            calls["n"] += 1
            value = criterion(logits, target)
            return value * float("nan") if calls["n"] > 4 else value  # from epoch 2 on
        return loss

    monkeypatch.setattr(core.loss, "get_loss", poisoned)
    assert train_main.main(train_args(data_root, tmp_path, "nan", 3)) == 1
    err = capsys.readouterr().err
    assert "nan" in err and "save_1.npz" in err
    folder = tmp_path / "nan"
    assert sorted(n for n in os.listdir(folder) if n.startswith("save_")) == ["save_1.npz"]
    assert load_checkpoint(folder / "save_1.npz")["meta"]["epoch"] == 2


def test_no_dataset_gives_a_short_hint_not_a_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "main.py", "--root_path", str(tmp_path / "nowhere")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "tools/prepare_dataset.py" in proc.stderr and "make demo" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 6


def test_no_cuda_is_read_from_the_parsed_options(monkeypatch):
    from core import entry
    from core.jittor_setup import jt
    monkeypatch.delenv("VAANET_NO_CUDA", raising=False)
    monkeypatch.setattr(jt.flags, "use_cuda", jt.flags.use_cuda)
    entry.choose_device(False)
    assert "VAANET_NO_CUDA" not in os.environ
    entry.choose_device(True)  # what main(["--no_cuda"]) does, whatever sys.argv holds
    assert os.environ["VAANET_NO_CUDA"] == "1" and jt.flags.use_cuda == 0


@pytest.mark.parametrize("script", ["main.py", "test.py", "predict.py", "opts.py"])
def test_help(script):
    proc = subprocess.run([sys.executable, script, "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0
    assert "--" in proc.stdout and "usage" in proc.stdout
    # --help answers without starting Jittor (nor does reading the options: --no_cuda
    # must be known before it starts)
    code = ("import runpy, sys\nsys.argv = [%r, '--help']\ntry:\n"
            "    runpy.run_path(%r, run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "print('jittor' in sys.modules, file=sys.stderr)" % (script, script))
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.stderr.strip().splitlines()[-1] == "False", proc.stderr


def _replace_frames(folder, data):
    for f in sorted(folder.glob("*.jpg")):
        f.write_bytes(data(f))


@pytest.mark.slow
def test_bad_frame_keeps_the_epoch_names_the_checkpoint_and_resumes_exactly(data_root, full_run,
                                                                           tmp_path):
    """A damaged test video stops epoch 1's evaluation (its training is saved), a damaged
    training video stops epoch 2's training (lost; save_1 named); once repaired, the run
    resumes from save_1 to the very weights of the uninterrupted run."""
    import shutil
    from datasets.catalog import DATASETS

    root = tmp_path / "data"
    shutil.copytree(data_root, root, ignore=shutil.ignore_patterns("mfcc_cache"))
    facts = DATASETS["ve8"]
    db = json.loads((root / facts.annotation_file(1)).read_text())["database"]
    folder_of = {v: root / facts.frames_folder / e["annotations"]["label"] / v for v, e in db.items()}
    test_video = next(v for v, e in db.items() if e["subset"] == "validation")
    train_video = next(v for v, e in db.items() if e["subset"] == "training")
    results = tmp_path / "results"
    folder = results / "bad"

    def main_py(*extra):
        return subprocess.run([sys.executable, "main.py", *train_args(root, results, "bad", 2), *extra],
                              cwd=ROOT, capture_output=True, text=True, timeout=600)

    def no_traceback(proc):
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "Traceback" not in proc.stderr and "quick exit" not in proc.stderr, proc.stderr
        return proc.stderr

    # 1. every frame of a test video overwritten: epoch 1 trains, its evaluation fails
    _replace_frames(folder_of[test_video], lambda f: b"overwritten")
    err = no_traceback(main_py())
    assert "main.py: cannot read a sample during epoch 1's evaluation:" in err
    assert f"  video  {test_video} " in err and str(folder_of[test_video]) in err
    assert "  cause  not a JPEG image: it starts with b'overwritten'" in err
    assert f"Epoch 1's training is saved in {folder / 'save_1.npz'}." in err
    assert load_checkpoint(folder / "save_1.npz")["meta"]["evaluated"] is False
    assert sorted(n for n in os.listdir(folder) if n.endswith(".npz")) == ["save_1.npz"]

    # 2. repaired; every frame of a training video truncated: the resumed run evaluates
    # epoch 1, then epoch 2's training fails (single-process loader this time)
    shutil.rmtree(folder_of[test_video])
    shutil.copytree(data_root / folder_of[test_video].relative_to(root), folder_of[test_video])
    _replace_frames(folder_of[train_video], lambda f: f.read_bytes()[:200])
    err = no_traceback(main_py("--resume_path", str(folder / "save_1.npz"), "--n_threads", "0"))
    assert "main.py: cannot read a sample during epoch 2's training:" in err
    assert "  cause  a truncated JPEG" in err and str(folder_of[train_video]) in err
    assert (f"Epoch 2's training is lost; the last checkpoint is {folder / 'save_1.npz'}."
            in err)
    meta = load_checkpoint(folder / "save_1.npz")["meta"]
    assert meta["evaluated"] is True and meta["val_acc"] == meta["best_acc"]
    assert (folder / "best.npz").is_file() and not (folder / "save_2.npz").exists()

    # 3. repaired: resuming from the folder finishes epoch 2 exactly as without the errors
    shutil.rmtree(folder_of[train_video])
    shutil.copytree(data_root / folder_of[train_video].relative_to(root), folder_of[train_video])
    proc = main_py("--resume_path", str(folder))
    assert proc.returncode == 0, proc.stderr
    assert_same_run(folder, full_run)


def test_tensorboard_event_files_hold_the_releases_scalars(full_run):
    """TensorBoard's own reader gives back, from the event files in the results folder, the
    release's scalars: every epoch's as metrics.jsonl has them, the learning rate, and one
    point per training batch whose mean is the epoch's."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    board = EventAccumulator(str(full_run))
    board.Reload()
    assert set(board.Tags()["scalars"]) == {
        "train/batch/loss", "train/batch/acc", "train/epoch/loss", "train/epoch/acc",
        "train/lr", "val/loss", "val/acc"}

    def series(tag):
        return [e.step for e in board.Scalars(tag)], np.array([e.value for e in board.Scalars(tag)])

    lines = metrics_lines(full_run)
    for split, prefix in (("train", "train/epoch"), ("val", "val")):
        for key in ("loss", "acc"):
            steps, values = series(f"{prefix}/{key}")
            assert steps == [1, 2]
            np.testing.assert_allclose(values, [r[key] for r in lines if r["split"] == split],
                                       rtol=1e-6)
    steps, lr = series("train/lr")
    assert steps == [1, 2] and np.allclose(lr, 1e-3)
    train = [r for r in lines if r["split"] == "train"]
    for key in ("loss", "acc"):
        steps, values = series(f"train/batch/{key}")
        assert steps == list(range(1, 9))  # 16 videos in batches of 4, two epochs
        np.testing.assert_allclose([values[:4].mean(), values[4:].mean()],
                                   [r[key] for r in train], rtol=1e-5)


def test_tensorboard_off_on_demand_and_without_a_writer(tmp_path, monkeypatch):
    """--no_tensorboard writes nothing; without a writer installed the default writes
    nothing and --tensorboard is refused with what to install."""
    from core import tensorboard
    assert tensorboard.TrainingBoard.open(str(tmp_path), False) is None
    assert os.listdir(tmp_path) == []
    monkeypatch.setattr(tensorboard, "summary_writer", lambda: None)
    assert tensorboard.TrainingBoard.open(str(tmp_path), None) is None
    with pytest.raises(tensorboard.TensorBoardMissing, match="pip install tensorboardX"):
        tensorboard.TrainingBoard.open(str(tmp_path), True)
