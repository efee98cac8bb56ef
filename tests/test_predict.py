"""predict.py on synthetic videos (with and without sound, 10 frames, long) with a tiny
randomly initialised VAANet; the sample must equal the evaluation set's."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from datasets.catalog import DATASETS

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
VE8 = list(DATASETS["ve8"].classes.names)
POSITIVE = [VE8.index(c) for c in DATASETS["ve8"].classes.positive]
TINY = {"dataset": "ve8", "n_classes": 8, "resnet_depth": 10, "seq_len": 3,
        "snippet_duration": 4, "sample_size": 32, "audio_embed_size": 256,
        "audio_n_segments": 16, "fps": 30}
JSON_KEYS = {"video", "duration_s", "video_fps", "n_frames", "has_sound", "checkpoint",
             "config", "prediction", "top", "probabilities", "polarity", "snippets"}


def run(args, env=None):
    return subprocess.run([PY, *map(str, args)], cwd=REPO, capture_output=True, text=True,
                          timeout=240, env=env)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    from core.jittor_setup import jt
    from core.checkpoint import save_checkpoint
    from model import generate_model

    jt.set_global_seed(5)
    model = generate_model(TINY)
    path = tmp_path_factory.mktemp("predict_ckpt") / "tiny.npz"
    # saved after epoch 2: meta's epoch is the next one to run, as in the release
    save_checkpoint(path, model.state_dict(), None, {"epoch": 3, "opts": dict(TINY)})
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory, make_video):
    d = tmp_path_factory.mktemp("predict_videos")
    return {
        "sound": make_video(d / "with sound.mp4", frames=40, fps=25, audio=True),
        "silent": make_video(d / "silent.mp4", frames=40, fps=25, audio=False),
        "short": make_video(d / "short.mp4", frames=10, fps=25, audio=True),
        "long": make_video(d / "long.mp4", frames=300, fps=30, size=(64, 48), audio=True),
    }


def predict_json(capsys, *args):
    import predict
    assert predict.main([*map(str, args), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def check_summary(s, n_frames, has_sound, top=3):
    assert JSON_KEYS <= set(s)
    assert s["n_frames"] == n_frames and s["has_sound"] is has_sound
    assert len(s["top"]) == top
    probs = [t["prob"] for t in s["top"]]
    assert probs == sorted(probs, reverse=True)
    assert s["prediction"] == s["top"][0]
    assert list(s["probabilities"]) == VE8
    assert sum(s["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    pos = sum(s["probabilities"][VE8[i]] for i in POSITIVE)
    assert s["polarity"]["positive_prob"] == pytest.approx(pos, abs=1e-6)
    assert s["polarity"]["label"] == ("positive" if s["prediction"]["index"] in POSITIVE
                                      else "negative")
    assert len(s["snippets"]) == TINY["seq_len"]
    assert sum(sn["weight"] for sn in s["snippets"]) == pytest.approx(1.0, abs=1e-5)
    for sn in s["snippets"]:
        assert len(sn["frames"]) == TINY["snippet_duration"]
        assert all(1 <= f <= n_frames for f in sn["frames"])
        assert sn["key_frame"] == sn["frames"][len(sn["frames"]) // 2]
        assert 0 <= sn["start_s"] < sn["end_s"] <= s["duration_s"] + 1e-6


def _evaluation_set(video, root, cfg):
    """The evaluation set holding only ``video`` (prepared as the dataset tools would)."""
    from datasets.media import extract_audio, extract_frames
    from datasets.ve8 import VE8Dataset

    vid = "clip, one"
    ve8 = DATASETS["ve8"]
    frames, mp3s, ann = (root / ve8.frames_folder, root / ve8.audio_folder,
                         root / ve8.annotation_file(1))
    extract_frames(video, frames / "Joy" / vid)
    extract_audio(video, mp3s / "Joy" / f"{vid}.mp3")
    ann.write_text(json.dumps({"labels": VE8, "database": {
        vid: {"subset": "validation", "annotations": {"label": "Joy"}}}}))
    return VE8Dataset(str(frames), str(mp3s), str(ann), "validation", seq_len=cfg["seq_len"],
                      snippet_duration=cfg["snippet_duration"], sample_size=cfg["sample_size"])


def test_sample_equals_evaluation_set(tmp_path, videos):
    """predict.py builds exactly the evaluation set's item for the same video."""
    import predict

    video = videos["sound"]
    cfg = dict(TINY, seq_len=3, snippet_duration=8, sample_size=48)
    ds = _evaluation_set(video, tmp_path / "root", cfg)
    visual, target, audio, video_id = ds[0]

    work = tmp_path / "work"
    work.mkdir()
    ex = predict.extract(str(video), str(work))
    assert ex["n_frames"] == 40 and ex["has_sound"]
    mine, my_audio, snippets = predict.sample_of(ex, cfg)
    np.testing.assert_array_equal(mine, visual)
    assert snippets == ds.snippet_indices(0)[0]
    np.testing.assert_array_equal(my_audio, audio)


def test_probabilities_and_gamma_are_the_models_outputs(ckpt, videos, tmp_path, capsys):
    """The reported probabilities and per-snippet gamma are the checkpoint's model's
    outputs on the evaluation set's item for the same video."""
    from core.checkpoint import load_weights
    from core.evaluate import softmax
    from core.jittor_setup import jt
    from model import generate_model

    s = predict_json(capsys, videos["sound"], "--checkpoint", ckpt)
    visual, _, audio, _ = _evaluation_set(videos["sound"], tmp_path / "root", TINY)[0]
    model = generate_model(TINY)
    load_weights(model, str(ckpt))
    model.eval()
    with jt.no_grad():
        logits, _, _, gamma = model(jt.array(visual[None]), jt.array(audio[None]))
    np.testing.assert_allclose([s["probabilities"][c] for c in VE8],
                               softmax(logits.numpy())[0], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose([sn["gamma"] for sn in s["snippets"]], gamma.numpy()[0],
                               rtol=1e-5, atol=1e-7)


def test_with_sound_json_and_report_subprocess(ckpt, videos, tmp_path):
    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    png = tmp_path / "out" / "attention.png"
    env = dict(os.environ, TMPDIR=str(tmp))
    r = run(["predict.py", videos["sound"], "--checkpoint", ckpt, "--json", "--top", "4",
             "--report", png], env=env)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    check_summary(s, 40, True, top=4)
    assert s["video_fps"] == 25 and s["duration_s"] == pytest.approx(1.6, abs=0.05)
    assert s["checkpoint_epoch"] == 2 and s["config"]["seq_len"] == 3
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(tmp.iterdir()) == []   # the temporary folder is cleaned up


def test_silent_text_output(ckpt, videos, capsys):
    import predict
    assert predict.main([str(videos["silent"]), "--checkpoint", str(ckpt)]) == 0
    text = capsys.readouterr().out
    assert "sound: no" in text and "top classes:" in text and "polarity:" in text
    assert "tiny.npz, epoch 2\n" in text  # the epoch it was saved after
    assert "temporal attention (3 snippets" in text and "#3" in text
    s = predict_json(capsys, videos["silent"], "--checkpoint", ckpt)
    check_summary(s, 40, False)


def test_ten_frame_video(ckpt, videos, capsys):
    # fewer than 16 frames: the dataset tools write n_frames 0, prediction still works
    s = predict_json(capsys, videos["short"], "--checkpoint", ckpt, "--top", "1")
    check_summary(s, 10, True, top=1)
    # loop-padded to 12 indices, 3 segments of 4: the last one wraps around
    assert [sn["frames"] for sn in s["snippets"]] == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 1, 2]]
    assert [sn["looped"] for sn in s["snippets"]] == [False, False, True]


def test_long_video(ckpt, videos, capsys):
    s = predict_json(capsys, videos["long"], "--checkpoint", ckpt)
    check_summary(s, 300, True)
    # centre snippets of 3 segments of 100 frames: starts 48, 148, 248
    assert [sn["frames"][0] for sn in s["snippets"]] == [49, 149, 249]
    assert s["snippets"][0]["start_s"] == pytest.approx(48 / 30, abs=1e-3)
    assert s["snippets"][2]["end_s"] == pytest.approx(252 / 30, abs=1e-3)


def test_classes_come_from_the_checkpoint(ckpt, videos, capsys, tmp_path):
    """A checkpoint that names its classes (as main.py's do) is shown with those names and
    that polarity; without a polarity there is none to show."""
    from core.checkpoint import load_checkpoint, save_checkpoint

    names = [f"mood {i}" for i in range(8)]
    saved = load_checkpoint(ckpt)
    own = tmp_path / "own.npz"
    save_checkpoint(own, saved["state_dict"], None, dict(saved["meta"], labels=names,
                                                          positive_classes=["mood 2", "mood 5"]))
    s = predict_json(capsys, videos["short"], "--checkpoint", own)
    assert list(s["probabilities"]) == names
    assert s["polarity"]["positive_prob"] == pytest.approx(
        s["probabilities"]["mood 2"] + s["probabilities"]["mood 5"], abs=1e-6)
    assert s["polarity"]["label"] == ("positive" if s["prediction"]["index"] in (2, 5)
                                      else "negative")
    save_checkpoint(own, saved["state_dict"], None, dict(saved["meta"], labels=names,
                                                          positive_classes=None))
    s = predict_json(capsys, videos["short"], "--checkpoint", own)
    assert s["polarity"] == {"label": None, "positive_prob": None, "negative_prob": None}


def test_flags_override_checkpoint(ckpt, videos, capsys):
    import predict
    # seq_len 4 given explicitly wins over meta's 3 -> the weights no longer fit: exit 2
    assert predict.main([str(videos["short"]), "--checkpoint", str(ckpt), "--seq_len", "4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not fit" in err[0]


def test_missing_and_unreadable_files(ckpt, tmp_path):
    r = run(["predict.py", tmp_path / "missing.mp4", "--checkpoint", ckpt])
    assert r.returncode == 2 and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and "missing.mp4" in r.stderr
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 10)
    r = run(["predict.py", junk, "--checkpoint", ckpt])
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "junk.mp4" in r.stderr
    r = run(["predict.py", junk, "--checkpoint", tmp_path / "no.npz"])
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1


def test_help():
    r = run(["predict.py", "--help"])
    assert r.returncode == 0
    for flag in ("--checkpoint", "--json", "--report", "--top", "--seq_len"):
        assert flag in r.stdout
