"""A dataset of your own classes end to end: three synthetic classes under new names,
prepared with a made split (tools/prepare_dataset.py --dataset custom), trained for two
epochs with --loss_func ce and with PCCE, evaluated with features (test.py) and
predicted (predict.py), the class names carried into every output; and each bad input
of the custom path, refused with a message before anything is written."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import main as train_main
from datasets.catalog import DATASETS
from tests.helpers import TRAIN_FLAGS as TINY, mtimes

REPO = Path(__file__).resolve().parents[1]
CUSTOM = DATASETS["custom"]
CLASSES = ["calm", "cheerful", "tense"]
POSITIVE = ["calm", "cheerful"]


def tool(script, *args):
    return subprocess.run([sys.executable, str(REPO / "tools" / script), *map(str, args)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    """RAW/<class>/<id>.mp4: 4 videos of 1 s in each of 3 classes named as nobody's."""
    raw = tmp_path_factory.mktemp("custom") / "raw"
    r = tool("make_demo_dataset.py", "--dst", raw, "--classes", ",".join(CLASSES), "--no_lists",
             "--per_class_train", "4", "--per_class_test", "0", "--seconds", "1",
             "--workers", "2", "--no_progress")
    assert r.returncode == 0, r.stdout + r.stderr
    return raw


@pytest.fixture(scope="module")
def root(raw):
    root = raw.parent / "data"
    r = tool("prepare_dataset.py", "--dataset", "custom", "--src", raw, "--dst", root,
             "--positive_classes", "cheerful,calm", "--seed", "5", "--workers", "2", "--no_progress")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "9 training + 3 test videos in 3 classes" in r.stdout
    return root


def read_lists(folder):
    from tools.ve8_json import read_splits
    s = read_splits(folder)
    return s.labels, sorted((e.cls, e.video_id, e.subset) for e in s.entries)


# ------------------------------------------------------------------ the split
def test_made_split_is_stratified_and_seeded():
    from tools.custom_dataset import made_split, n_test_videos
    videos = {"b": [f"b{i}" for i in range(9)], "a": [f"a{i}" for i in range(6)],
              "c": ["c0", "c1", "c2"], "d": ["d0", "d1"]}
    split = made_split(videos, 1 / 3, seed=0)
    assert split.labels == ["a", "b", "c", "d"]  # class folders in name order
    test = {c: sorted(e.video_id for e in split.entries if e.cls == c and e.subset == "validation")
            for c in videos}
    assert {c: len(t) for c, t in test.items()} == {"a": 2, "b": 3, "c": 1, "d": 1}
    for c, ids in videos.items():  # every video once, in its own class
        assert sorted(e.video_id for e in split.entries if e.cls == c) == sorted(ids)
    keys = lambda s: [(e.cls, e.video_id, e.subset) for e in s.entries]
    assert keys(made_split(videos, 1 / 3, seed=0)) == keys(split)
    other = made_split(videos, 1 / 3, seed=1)
    assert keys(other) != keys(split)
    assert [e.subset for e in other.entries] == [e.subset for e in split.entries]  # same counts
    assert [n_test_videos(n, 1 / 3) for n in (2, 3, 4, 5, 6, 9)] == [1, 1, 1, 2, 2, 3]
    assert n_test_videos(3, 0.9) == 2 and n_test_videos(10, 0.01) == 1  # one of each, at least


def test_prepared_dataset_lists_and_annotation(raw, root):
    ann = json.loads((root / CUSTOM.annotation_file(1)).read_text(encoding="utf-8"))
    assert ann["labels"] == CLASSES and ann["positive_classes"] == POSITIVE
    lists = Path(CUSTOM.lists_dir(root))
    labels, entries = read_lists(lists)
    assert labels == CLASSES
    assert {(e[1], e[2]) for e in entries} == {(v, d["subset"]) for v, d in ann["database"].items()}
    for cls in CLASSES:  # stratified: 3 training and 1 test video of every class
        assert sorted(e[2] for e in entries if e[0] == cls) == ["training"] * 3 + ["validation"]
        for vid in (e[1] for e in entries if e[0] == cls):
            assert (root / CUSTOM.frames_folder / cls / vid / "n_frames").read_text() == "30"
            assert (root / CUSTOM.audio_folder / cls / f"{vid}.mp3").is_file()
    # the same seed: the same lists, nothing redone; the lists can be given back
    before = mtimes(root)
    r = tool("prepare_dataset.py", "--dataset", "custom", "--src", raw, "--dst", root,
             "--positive_classes", "calm,cheerful", "--seed", "5", "--no_progress")
    assert r.returncode == 0 and "12 skipped" in r.stdout, r.stdout + r.stderr
    assert mtimes(root) == before
    other = raw.parent / "again"
    r = tool("prepare_dataset.py", "--dataset", "custom", "--src", raw, "--dst", other,
             "--split_dir", lists, "--no_audio", "--no_progress")
    assert r.returncode == 0, r.stdout + r.stderr
    again = json.loads((other / CUSTOM.annotation_file(1)).read_text(encoding="utf-8"))
    assert again["database"] == ann["database"] and again["positive_classes"] is None
    # another seed makes another split, which the lists already there are never replaced by
    r = tool("prepare_dataset.py", "--dataset", "custom", "--src", raw, "--dst", root,
             "--seed", "6", "--no_progress")
    assert r.returncode == 2 and "another split" in r.stderr and f"--split_dir {lists}" in r.stderr
    assert mtimes(root) == before
    r = tool("prepare_dataset.py", "--dataset", "custom", "--src", raw, "--dst", raw.parent / "seed6",
             "--seed", "6", "--no_progress", "--no_audio")
    assert r.returncode == 0, r.stderr
    labels6, entries6 = read_lists(Path(CUSTOM.lists_dir(raw.parent / "seed6")))
    assert labels6 == labels and entries6 != entries
    assert sorted(e[:2] for e in entries6) == sorted(e[:2] for e in entries)


def test_bad_raw_folders_are_refused_before_anything_is_written(raw, tmp_path):
    bad = tmp_path / "bad"
    videos = sorted((raw / "calm").iterdir())
    for dst in ("happy/a.mp4", "happy/b.mp4", "sad/a.avi", "sad/c.mp4", "sad/d.mp4", "lone/e.mp4"):
        (bad / dst).parent.mkdir(parents=True, exist_ok=True)
        (bad / dst).write_bytes(videos[0].read_bytes())
    dst = tmp_path / "out"
    r = tool("prepare_dataset.py", "--dataset", "custom", "--src", bad, "--dst", dst)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "at least 2 videos per class" in r.stderr and "lone (1 video)" in r.stderr
    assert "'a' in happy/a.mp4, sad/a.avi" in r.stderr  # both problems, at once
    assert "nothing was written" in r.stderr and not dst.exists()
    r = tool("prepare_dataset.py", "--dataset", "custom", "--src", raw, "--dst", dst,
             "--positive_classes", "Calm,joy")
    assert r.returncode == 2 and not dst.exists()
    assert "do not exist: 'Calm' (did you mean 'calm'?), 'joy'" in r.stderr
    assert "the classes are: calm, cheerful, tense" in r.stderr
    r = tool("prepare_dataset.py", "--src", raw, "--dst", dst, "--positive_classes", "calm")
    assert r.returncode == 2 and "only for --dataset custom" in r.stderr


# ------------------------------------------------------------------ training and evaluation
@pytest.fixture(scope="module")
def trained(root, tmp_path_factory):
    results = tmp_path_factory.mktemp("custom_results")
    common = ["--dataset", "custom", "--root_path", str(root), "--result_path", str(results),
              "--n_epochs", "2"] + TINY
    assert train_main.main(common + ["--expr_name", "ce", "--loss_func", "ce"]) == 0
    assert train_main.main(common + ["--expr_name", "pcce"]) == 0
    return results


def test_training_with_ce_and_pcce_carries_the_classes(trained):
    from core.checkpoint import load_checkpoint
    for name in ("ce", "pcce"):
        lines = [json.loads(l) for l in (trained / name / "metrics.jsonl").read_text().splitlines()]
        assert [(l["epoch"], l["split"]) for l in lines] == [(1, "train"), (1, "val"),
                                                             (2, "train"), (2, "val")]
        assert all(np.isfinite(l["loss"]) for l in lines)
        ckpt = load_checkpoint(trained / name / "save_2.npz")
        assert ckpt["meta"]["labels"] == CLASSES and ckpt["meta"]["positive_classes"] == POSITIVE
        assert ckpt["meta"]["opts"]["n_classes"] is None  # no flag restated them
        assert ckpt["state_dict"]["av_fc.weight"].shape == (3, 768)
    # the two losses differ only where the polarity is wrong: two different runs
    a = load_checkpoint(trained / "ce" / "save_2.npz")["state_dict"]["av_fc.weight"]
    b = load_checkpoint(trained / "pcce" / "save_2.npz")["state_dict"]["av_fc.weight"]
    assert not np.array_equal(a, b)


def test_evaluation_report_predictions_and_features(root, trained, tmp_path):
    import test as test_main
    from core.checkpoint import load_checkpoint
    out, feats = tmp_path / "eval", tmp_path / "features.npz"
    ckpt = trained / "pcce" / "save_2.npz"
    assert test_main.main(["--resume_path", str(ckpt), "--out", str(out), "--features", str(feats),
                           "--n_threads", "0", "--no_progress"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["class_names"] == CLASSES and report["dataset"] == "custom"
    assert [c["class"] for c in report["per_class"]] == CLASSES
    assert [c["n"] for c in report["per_class"]] == [1, 1, 1]
    assert report["polarity_accuracy"] is not None and report["loss_func"] == "pcce_ve8"
    with open(out / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["video", "true_class", "predicted_class"] + [f"prob_{c}" for c in CLASSES]
    assert sorted(r["true_class"] for r in rows) == CLASSES

    f = np.load(feats, allow_pickle=False)
    n, s = 3, 2
    shapes = {"video": (n,), "target": (n,), "fused": (n, 768), "visual": (n, 512), "audio": (n, 256),
              "alpha": (n, s, 4), "beta": (n, s, 512), "gamma": (n, s), "audio_attention": (n, 16),
              "logits": (n, 3),
              "class_names": (3,), "positive_classes": (2,)}
    assert {k: f[k].shape for k in f.files} == shapes
    assert f["class_names"].tolist() == CLASSES and f["positive_classes"].tolist() == POSITIVE
    assert f["video"].tolist() == [r["video"] for r in rows]
    assert [CLASSES[t] for t in f["target"]] == [r["true_class"] for r in rows]
    np.testing.assert_array_equal(f["fused"], np.concatenate([f["visual"], f["audio"]], axis=1))
    # the fused vector through the checkpoint's own classifier gives the logits ...
    sd = load_checkpoint(ckpt)["state_dict"]
    w, b = sd["av_fc.weight"].astype(np.float64), sd["av_fc.bias"].astype(np.float64)
    logits = f["fused"].astype(np.float64) @ w.T + b
    scale = np.abs(f["logits"]).max()
    assert np.abs(logits - f["logits"]).max() <= 1e-5 * scale
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    csv_probs = np.array([[float(r[f"prob_{c}"]) for c in CLASSES] for r in rows])
    assert np.abs(probs - csv_probs).max() <= 2e-6  # ... and test.py's probabilities
    # (positive control: the halves the other way round do not)
    swapped = np.concatenate([f["audio"], f["visual"]], axis=1)
    assert np.abs(swapped @ w.T + b - f["logits"]).max() > 100 * 1e-5 * scale


def test_prediction_csv_carries_the_class_names(raw, trained, tmp_path):
    import predict
    out = tmp_path / "pred.csv"
    ckpt = trained / "ce" / "best.npz"
    assert predict.main([str(raw / "tense"), "--checkpoint", str(ckpt), "--csv", str(out),
                         "--workers", "0", "--no_progress"]) == 0
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == (["path", "top_class"] + [f"prob_{c}" for c in CLASSES]
                             + ["polarity", "positive_prob", "status", "error"])
    assert len(rows) == 4 and {r["status"] for r in rows} == {"ok"}
    for r in rows:
        assert r["top_class"] in CLASSES
        assert r["polarity"] == ("positive" if r["top_class"] in POSITIVE else "negative")
        pos = sum(float(r[f"prob_{c}"]) for c in POSITIVE)
        assert float(r["positive_prob"]) == pytest.approx(pos, abs=2e-6)


# ------------------------------------------------------------------ refused, before long work
def test_pcce_without_polarity_names_both_ways_out(root, tmp_path, capsys):
    ann = json.loads((root / CUSTOM.annotation_file(1)).read_text(encoding="utf-8"))
    unknown = tmp_path / "no_polarity.json"
    unknown.write_text(json.dumps(dict(ann, positive_classes=None)))
    args = ["--dataset", "custom", "--root_path", str(root), "--annotation_path", str(unknown),
            "--result_path", str(tmp_path / "r"), "--expr_name", "x"] + TINY
    assert train_main.main(args) == 2
    err = capsys.readouterr().err
    assert "--positive_classes" in err and "--loss_func ce" in err and str(unknown) in err
    assert not (tmp_path / "r").exists()
    assert train_main.main(args + ["--n_classes", "4", "--loss_func", "ce"]) == 2
    assert "has 3 classes (calm, cheerful, tense), --n_classes says 4" in capsys.readouterr().err


def test_checkpoint_of_other_classes_is_refused(demo_data, trained, tmp_path, capsys):
    """A 3-class checkpoint against the 8-class demo dataset: test.py and a resumed
    main.py say so, in the same words, before loading anything, and write nothing."""
    import test as test_main
    ckpt = trained / "ce" / "save_2.npz"
    out = tmp_path / "eval"
    assert test_main.main(["--resume_path", str(ckpt), "--dataset", "ve8", "--root_path",
                           str(demo_data), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "holds a model of 3 classes (calm, cheerful, tense)" in err and "has 8 (Anger" in err
    assert not out.exists()
    results = tmp_path / "results"
    assert train_main.main(["--root_path", str(demo_data), "--resume_path", str(ckpt),
                            "--result_path", str(results), "--expr_name", "x"] + TINY) == 2
    err = capsys.readouterr().err
    assert f"main.py: error: {ckpt} holds a model of 3 classes (calm, cheerful, tense)" in err
    assert "has 8 (Anger" in err and "use the checkpoint with the dataset" in err
    assert not results.exists()
