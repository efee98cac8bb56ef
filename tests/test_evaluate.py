"""core/evaluate.py, core/report.py and test.py on the tiny prepared demo dataset and a tiny
randomly initialised VAANet (ResNet-10, 2 snippets of 4 frames, 32 x 32)."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from datasets.catalog import DATASETS, Classes
from tests.helpers import TINY, network_flags

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
VE8 = list(DATASETS["ve8"].classes.names)
VE8_POSITIVE = list(DATASETS["ve8"].classes.positive)
POSITIVE = {VE8.index(c) for c in VE8_POSITIVE}
TINY_FLAGS = network_flags(TINY)


def run(args, **kw):
    return subprocess.run([PY, *map(str, args)], cwd=REPO, capture_output=True, text=True,
                          timeout=240, **kw)


@pytest.fixture(scope="module")
def env(tmp_path_factory, demo_data):
    base = tmp_path_factory.mktemp("evaluate")
    root = demo_data

    from core.jittor_setup import jt
    from core.checkpoint import save_checkpoint
    from model import generate_model
    import torch

    jt.set_global_seed(11)
    model = generate_model(TINY).eval()
    sd = model.state_dict()
    # options as an older checkpoint stored them: every dataset path joined to its root
    ve8 = DATASETS["ve8"]
    opts = dict(TINY, root_path=str(root), result_path=str(base / "results"), expr_name="",
                loss_func="pcce_ve8", lambda_0=0.5, batch_size=4,
                video_path=str(root / ve8.frames_folder), audio_path=str(root / ve8.audio_folder),
                annotation_path=str(root / ve8.annotation_file(1)))
    npz = base / "tiny.npz"
    save_checkpoint(npz, sd, None, {"epoch": 1, "opts": opts})
    pth = base / "tiny_release.pth"
    torch.save({"epoch": 1, "state_dict": {k: torch.from_numpy(np.array(v.numpy()))
                                          for k, v in sd.items()}}, pth)
    return {"base": base, "root": root, "npz": npz, "pth": pth, "model": model}


def opt_for(root, batch_size=3):
    from opts import parse_opts
    return parse_opts(["--root_path", str(root), *TINY_FLAGS, "--n_threads", "0",
                       "--batch_size", str(batch_size), "--no_audio_cache"])


@pytest.fixture(scope="module")
def evaluated(env):
    from core.evaluate import evaluate
    from core.loss import get_loss
    from datasets.factory import get_validation_set, make_loader

    opt = opt_for(env["root"], batch_size=3)   # 8 videos: batches of 3, 3, 2
    val = make_loader(get_validation_set(opt), opt, shuffle=False)
    model = env["model"]
    model.train()
    running = {k: v.numpy().copy() for k, v in model.state_dict().items() if "running" in k}
    result = evaluate(model, val, criterion=get_loss(opt), desc="t", progress=False)
    after = {k: v.numpy() for k, v in model.state_dict().items() if "running" in k}
    return {"result": result, "val": val, "opt": opt, "was_train_after": model.is_train,
            "running": (running, after)}


# ---------------------------------------------------------------- core/evaluate.py
def test_evaluate_covers_every_video_in_order(evaluated):
    res, val = evaluated["result"], evaluated["val"]
    assert res.n == val.n_samples == 8
    assert res.video_ids == [e["video_id"] for e in val.data]
    assert res.targets.dtype == np.int64
    assert res.targets.tolist() == [e["target"] for e in val.data]
    assert res.logits.shape == (8, 8) and res.logits.dtype == np.float32
    assert res.probs.shape == (8, 8) and res.probs.dtype == np.float32
    assert res.gamma.shape == (8, 2) and res.gamma.dtype == np.float32
    np.testing.assert_allclose(res.probs.sum(axis=1), 1.0, atol=1e-6)
    assert res.accuracy == pytest.approx(float((res.logits.argmax(1) == res.targets).mean()))
    assert (res.probs.argmax(1) == res.predictions).all()


def test_evaluate_rows_are_the_models_outputs_per_video(env, evaluated):
    """Each video's logits and temporal attention (gamma) are the model's own eval-mode
    outputs for that video, in the loader's order."""
    from core.jittor_setup import jt

    model, res = env["model"], evaluated["result"]
    logits, gamma, ids = [], [], []
    model.eval()
    try:
        with jt.no_grad():
            for visual, _, audio, video_ids in evaluated["val"]:
                out = model(visual, audio)
                logits.append(out[0].numpy())
                gamma.append(out[3].numpy())
                ids += list(video_ids)
    finally:
        model.train()
    assert ids == res.video_ids
    np.testing.assert_allclose(res.logits, np.concatenate(logits), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(res.gamma, np.concatenate(gamma), rtol=1e-5, atol=1e-6)


def test_evaluate_loss_is_per_sample_mean(evaluated):
    res = evaluated["result"]
    x = res.logits.astype(np.float64)
    lse = np.log(np.exp(x - x.max(1, keepdims=True)).sum(1)) + x.max(1)
    ce = lse - x[np.arange(res.n), res.targets]
    pos = np.array([i in POSITIVE for i in range(8)])
    weight = 1.0 + 0.5 * (pos[x.argmax(1)] != pos[res.targets])
    assert res.loss == pytest.approx(float((ce * weight).mean()), rel=1e-5)


def test_evaluate_restores_mode_and_keeps_statistics(evaluated):
    assert evaluated["was_train_after"] is True
    before, after = evaluated["running"]
    assert before.keys() == after.keys() and before
    for k in before:
        np.testing.assert_array_equal(before[k], after[k])


def test_evaluate_independent_of_batch_size(env, evaluated):
    from core.evaluate import evaluate
    from datasets.factory import get_validation_set, make_loader

    opt = opt_for(env["root"], batch_size=8)
    val = make_loader(get_validation_set(opt), opt, shuffle=False)
    res = evaluate(env["model"], val, progress=False)
    assert res.loss is None
    assert res.video_ids == evaluated["result"].video_ids
    np.testing.assert_allclose(res.logits, evaluated["result"].logits, rtol=1e-4, atol=1e-5)
    val.set_attrs(drop_last=True)
    with pytest.raises(ValueError):
        evaluate(env["model"], val, progress=False)


# ---------------------------------------------------------------- core/report.py
def test_report_consistent(evaluated, tmp_path):
    from core.report import Report

    res = evaluated["result"]
    rep = Report(res, DATASETS["ve8"].classes, dataset="ve8")
    m = rep.metrics
    cm = np.array(m["confusion_matrix"])
    assert cm.shape == (8, 8) and cm.sum() == res.n
    assert cm.trace() == m["n_correct"]
    assert m["accuracy"] == pytest.approx(res.accuracy)
    for i, c in enumerate(m["per_class"]):
        assert c["class"] == VE8[i] and c["n"] == cm[i].sum() == int((res.targets == i).sum())
        assert c["accuracy"] == pytest.approx(cm[i, i] / cm[i].sum())
    pol = np.mean([(t in POSITIVE) == (p in POSITIVE)
                   for t, p in zip(res.targets.tolist(), res.predictions.tolist())])
    assert m["polarity_accuracy"] == pytest.approx(pol)
    assert m["loss"] == pytest.approx(res.loss)

    csv_path = rep.write_predictions_csv(str(tmp_path / "p.csv"))
    with open(csv_path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["video", "true_class", "predicted_class"] + [f"prob_{c}" for c in VE8]
    assert len(rows) - 1 == res.n
    for row, vid, t, p in zip(rows[1:], res.video_ids, res.targets, res.predictions):
        assert row[:3] == [vid, VE8[t], VE8[p]]
        assert sum(float(x) for x in row[3:]) == pytest.approx(1.0, abs=1e-4)
    doc = json.loads(Path(rep.write_report_json(str(tmp_path / "r.json"))).read_text())
    assert doc["confusion_matrix"] == m["confusion_matrix"]
    png = rep.plot_confusion(str(tmp_path / "c.png"))
    assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = rep.format_report()
    assert "polarity accuracy" in text and "Anticipation" in text


def test_report_metrics_by_hand():
    from core.evaluate import EvalAccumulator
    from core.report import Report

    acc = EvalAccumulator()
    targets = [0, 0, 1, 4, 4, 5]
    preds = [0, 1, 1, 5, 4, 5]   # Anger->Anticipation and Joy->Sadness flip polarity
    logits = np.full((6, 8), -1.0, np.float32)
    logits[np.arange(6), preds] = 2.0
    acc.add([f"v{i}" for i in range(3)], targets[:3], logits[:3], np.ones((3, 2)), 1.0)
    acc.add([f"v{i}" for i in range(3, 6)], targets[3:], logits[3:], np.ones((3, 2)), 2.0)
    res = acc.result()
    assert res.loss == pytest.approx(1.5) and res.accuracy == pytest.approx(4 / 6)
    m = Report(res, DATASETS["ve8"].classes, "ve8").metrics
    assert m["per_class"][0]["accuracy"] == 0.5 and m["per_class"][1]["accuracy"] == 1.0
    assert m["per_class"][4]["accuracy"] == 0.5 and m["per_class"][2]["accuracy"] is None
    assert m["mean_class_accuracy"] == pytest.approx((0.5 + 1 + 0.5 + 1) / 4)
    assert m["polarity_accuracy"] == pytest.approx(4 / 6)
    assert m["confusion_matrix"][4][5] == 1
    # classes whose polarity is not known: no polarity accuracy, the rest unchanged
    unknown = Report(res, Classes(tuple(VE8)), "custom").metrics
    assert unknown["polarity_accuracy"] is None and unknown["accuracy"] == m["accuracy"]
    # a video seen twice is an error
    acc.add(["v0"], [0], logits[:1], np.ones((1, 2)))
    with pytest.raises(RuntimeError):
        acc.result()


def test_plot_curves(tmp_path):
    from core.experiment import read_metrics
    from core.report import curves_figure, curves_of, plot_curves

    lines = [{"epoch": 1, "split": "train", "loss": 2.0, "acc": 0.1},
             {"epoch": 1, "split": "train", "batch": 3, "loss": 9.0, "acc": 0.0},
             {"epoch": 1, "split": "val", "loss": 2.1, "acc": 0.12},
             {"epoch": 2, "split": "train", "loss": 1.5, "acc": 0.3},
             {"epoch": 2, "split": "val", "loss": 1.9}]
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n".join(json.dumps(l) for l in lines) + "\n{not json\n\n")
    data = curves_of(read_metrics(path))
    assert data["train"] == {1: {"loss": 2.0, "acc": 0.1}, 2: {"loss": 1.5, "acc": 0.3}}
    assert data["val"][2] == {"loss": 1.9}
    out = plot_curves(str(path), str(tmp_path / "sub" / "curves.png"))
    assert Path(out).read_bytes()[:4] == b"\x89PNG"
    # epochs are whole numbers on the axis, also for a 2-epoch run
    fig = curves_figure(data)
    for ax in fig.axes:
        fig.canvas.draw()
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks


# ---------------------------------------------------------------- test.py
def _read(out):
    return ((out / "report.json").read_text(), (out / "predictions.csv").read_text())


def _metrics(report_json):
    doc = json.loads(report_json)
    return {k: v for k, v in doc.items() if k not in ("checkpoint",)}


def test_cli_npz_deterministic_and_release_pth(env, evaluated):
    base = env["base"]
    # 1) .npz, no flags at all: config and data location from meta["opts"], default out dir
    r1 = run(["test.py", "--resume_path", env["npz"], "--n_threads", "0", "--no_progress"])
    assert r1.returncode == 0, r1.stderr
    out1 = base / "results" / "tiny" / "test"
    assert {p.name for p in out1.iterdir()} >= {"report.json", "predictions.csv", "confusion.png"}
    assert "top-1 accuracy" in r1.stdout and "polarity accuracy" in r1.stdout
    assert "Warning" not in r1.stderr
    # 2) the same again, into --out: identical numbers
    out2 = base / "again"
    r2 = run(["test.py", "--resume_path", env["npz"], "--n_threads", "0", "--no_progress",
              "--out", out2])
    assert r2.returncode == 0, r2.stderr
    assert _read(out1) == _read(out2)
    # 3) a release-format .pth of the same weights, config from flags
    out3 = base / "release"
    r3 = run(["test.py", "--resume_path", env["pth"], "--root_path", env["root"], *TINY_FLAGS,
              "--n_threads", "0", "--no_progress", "--out", out3])
    assert r3.returncode == 0, r3.stderr
    rep1, csv1 = _read(out1)
    rep3, csv3 = _read(out3)
    assert csv1 == csv3
    assert _metrics(rep1) == _metrics(rep3)
    # and the numbers agree with the in-process evaluation
    doc = json.loads(rep1)
    res = evaluated["result"]
    assert doc["n_videos"] == res.n and doc["accuracy"] == pytest.approx(res.accuracy)
    assert doc["loss"] == pytest.approx(res.loss, rel=1e-4)
    rows = list(csv.reader(csv1.splitlines()))[1:]
    assert [r[0] for r in rows] == res.video_ids
    np.testing.assert_allclose(np.array([[float(x) for x in r[3:]] for r in rows]), res.probs,
                               atol=2e-6)


def test_cli_missing_checkpoint_and_dataset(env, tmp_path):
    r = run(["test.py", "--resume_path", tmp_path / "nope.npz"])
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "nope.npz" in r.stderr
    r = run(["test.py", "--resume_path", env["npz"], "--root_path", tmp_path / "no_data"])
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "no_data" in r.stderr and "make demo" in r.stderr and "prepare_dataset.py" in r.stderr
    assert len(r.stderr.strip().splitlines()) <= 5


def test_cli_help():
    r = run(["test.py", "--help"])
    assert r.returncode == 0
    assert "--resume_path" in r.stdout and "--out" in r.stdout
