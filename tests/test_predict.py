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
from tests import helpers
from tests.helpers import snippet_indices

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
VE8 = list(DATASETS["ve8"].classes.names)
POSITIVE = [VE8.index(c) for c in DATASETS["ve8"].classes.positive]
TINY = dict(helpers.TINY, seq_len=3)
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


@pytest.fixture(scope="module")
def single(ckpt, videos):
    """``predict.py VIDEO --checkpoint CKPT --json`` of the sound, silent and short videos,
    run once for the tests that compare with them."""
    import contextlib
    import io
    import predict
    out = {}
    for name in ("sound", "silent", "short"):
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            assert predict.main([str(videos[name]), "--checkpoint", str(ckpt), "--json"]) == 0
        out[name] = json.loads(buf.getvalue())
    return out


def check_summary(s, n_frames, has_sound, top=3):
    assert JSON_KEYS <= set(s)
    assert s["n_frames"] == n_frames and s["has_sound"] is has_sound
    assert len(s["top"]) == top
    probs = [t["prob"] for t in s["top"]]
    assert probs == sorted(probs, reverse=True)
    best = max(s["probabilities"], key=s["probabilities"].get)  # the most probable class
    assert s["prediction"] == {"class": best, "index": VE8.index(best),
                               "prob": s["probabilities"][best]}
    assert s["top"][0] == s["prediction"]
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
    from datasets.video import prepare_sample

    video = videos["sound"]
    cfg = dict(TINY, seq_len=3, snippet_duration=8, sample_size=48)
    ds = _evaluation_set(video, tmp_path / "root", cfg)
    visual, target, audio, video_id = ds[0]

    mine = prepare_sample(str(video), cfg)
    assert mine["n_frames"] == 40 and mine["has_sound"]
    np.testing.assert_array_equal(mine["visual"], visual)
    assert mine["snippets"] == snippet_indices(ds, 0)
    np.testing.assert_array_equal(mine["audio"], audio)


def test_probabilities_and_gamma_are_the_models_outputs(ckpt, videos, single, tmp_path):
    """The reported probabilities and per-snippet gamma are the checkpoint's model's
    outputs on the evaluation set's item for the same video."""
    from core.checkpoint import load_weights
    from core.evaluate import softmax
    from core.jittor_setup import jt
    from model import generate_model

    s = single["sound"]
    assert s["video"] == str(videos["sound"])
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


def test_silent_text_output(ckpt, videos, single, capsys):
    import predict
    assert predict.main([str(videos["silent"]), "--checkpoint", str(ckpt)]) == 0
    text = capsys.readouterr().out
    assert "sound: no" in text and "top classes:" in text and "polarity:" in text
    assert "tiny.npz, epoch 2\n" in text  # the epoch it was saved after
    assert "temporal attention (3 snippets" in text and "#3" in text
    check_summary(single["silent"], 40, False)


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
    assert r.returncode == 1 and "Traceback" not in r.stderr  # a video that failed, not usage
    assert len(r.stderr.strip().splitlines()) == 1 and "junk.mp4" in r.stderr
    r = run(["predict.py", junk, "--checkpoint", tmp_path / "no.npz"])
    first, *hint = r.stderr.strip().splitlines()
    assert r.returncode == 2 and first.startswith("predict.py: error: checkpoint not found: ")
    assert first.endswith("no.npz") and len(hint) == 1 and "Train one" in hint[0]


def test_help():
    r = run(["predict.py", "--help"])
    assert r.returncode == 0
    for flag in ("--checkpoint", "--json", "--report", "--top", "--seq_len"):
        assert flag in r.stdout


# ------------------------------------------------------------------ many videos per call
def read_csv(path):
    import csv
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def folder(tmp_path_factory, videos):
    """Three good videos (one in a sub-folder), a broken one and a file that is no video."""
    import shutil
    d = tmp_path_factory.mktemp("batch") / "clips"
    (d / "more").mkdir(parents=True)
    shutil.copy(videos["sound"], d / "a, sound.mp4")
    shutil.copy(videos["silent"], d / "b-silent.mp4")
    shutil.copy(videos["short"], d / "more" / "c-short.mp4")
    (d / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"not really a video" * 50)
    (d / "notes.txt").write_text("not a video")
    return d


def test_batch_over_a_folder_with_a_broken_video_and_rerun(ckpt, folder, single, tmp_path):
    from core.checkpoint import load_checkpoint
    good = [folder / "a, sound.mp4", folder / "b-silent.mp4", folder / "more" / "c-short.mp4"]
    broken = str(folder / "broken.mp4")
    single = {str(v): single[name] for v, name in zip(good, ("sound", "silent", "short"))}
    out, feats = tmp_path / "out" / "predictions.csv", tmp_path / "features.npz"
    cmd = ["predict.py", folder, "--checkpoint", ckpt, "--csv", out, "--features", feats,
           "--json", "--workers", "2"]
    r = run(cmd)
    assert r.returncode == 1, r.stderr  # one video failed ...
    assert "notes.txt" in r.stderr and "not videos" in r.stderr
    assert "1 of 4 videos could not be predicted" in r.stderr and broken in r.stderr
    order = [str(good[0]), str(good[1]), broken, str(good[2])]  # sorted, folders after files
    lines = [json.loads(l) for l in r.stdout.splitlines()]
    assert [l["video"] for l in lines] == order
    bad = lines.pop(2)
    assert bad["status"] == "failed" and "broken.mp4" in bad["error"]
    rows = read_csv(out)
    assert list(rows[0]) == (["path", "top_class"] + [f"prob_{c}" for c in VE8]
                             + ["polarity", "positive_prob", "status", "error"])
    assert [r_["path"] for r_ in rows] == order
    bad = rows.pop(2)
    assert bad["status"] == "failed" and "broken.mp4" in bad["error"]
    assert bad["top_class"] == "" and bad["prob_Joy"] == ""
    for row, line in zip(rows, lines):  # ... the others are right
        s = single[row["path"]]
        assert row["status"] == "ok" and row["error"] == ""
        assert row["top_class"] == s["prediction"]["class"] == line["prediction"]["class"]
        for c in VE8:
            assert float(row[f"prob_{c}"]) == pytest.approx(s["probabilities"][c], abs=1e-6)
        assert row["polarity"] == s["polarity"]["label"]
        np.testing.assert_allclose(line["logits"], s["logits"], rtol=1e-5, atol=1e-6)
        assert len(line["snippets"]) == TINY["seq_len"]

    # features of the three: documented keys and shapes; the fused vector through the
    # checkpoint's classifier gives the logits of the single-video predictions
    f = np.load(feats)
    n, s_ = 3, TINY["seq_len"]
    assert {k: f[k].shape for k in f.files} == {
        "video": (n,), "target": (n,), "fused": (n, 768), "visual": (n, 512), "audio": (n, 256),
        "alpha": (n, s_, 1), "beta": (n, s_, 512), "gamma": (n, s_), "audio_attention": (n, 16),
        "logits": (n, 8),
        "class_names": (8,), "positive_classes": (4,)}
    assert f["video"].tolist() == [str(v) for v in good] and f["target"].tolist() == [-1] * 3
    assert f["class_names"].tolist() == VE8
    sd = load_checkpoint(ckpt)["state_dict"]
    logits = f["fused"].astype(np.float64) @ sd["av_fc.weight"].T.astype(np.float64) + sd["av_fc.bias"]
    expected = np.array([single[str(v)]["logits"] for v in good])
    scale = np.abs(expected).max()
    assert np.abs(logits - expected).max() <= 1e-5 * scale
    other = np.concatenate([f["audio"], f["visual"]], axis=1)  # positive control
    assert np.abs(other @ sd["av_fc.weight"].T + sd["av_fc.bias"] - expected).max() > 1e-3 * scale
    gammas = np.array([[sn["gamma"] for sn in single[str(v)]["snippets"]] for v in good])
    np.testing.assert_allclose(f["gamma"], gammas, rtol=1e-5, atol=1e-6)

    # re-run with the same outputs: the finished videos are skipped, the broken one tried again
    ok_lines = [l for l in out.read_text(encoding="utf-8").splitlines() if "broken" not in l][1:]
    r = run(cmd)
    assert r.returncode == 1 and "3 of 4 videos are already in" in r.stderr, r.stderr
    assert [json.loads(l)["video"] for l in r.stdout.splitlines()] == [broken]
    rows = read_csv(out)
    assert sorted(r_["path"] for r_ in rows) == sorted([broken] + [str(v) for v in good])
    assert [l for l in out.read_text(encoding="utf-8").splitlines() if "broken" not in l][1:] == ok_lines
    assert np.load(feats)["video"].tolist() == [str(v) for v in good]

    # an interrupted write leaves a cut-off line: the next run drops it; without the
    # broken video every video is done, nothing is predicted and the exit status is 0
    with open(out, "a", encoding="utf-8") as fh:
        fh.write(f"{folder / 'x.mp4'},Joy,0.1")
    r = run(["predict.py", *good, "--checkpoint", ckpt, "--csv", out, "--features", feats])
    assert r.returncode == 0 and r.stdout == "", r.stderr
    assert "3 of 3 videos are already in" in r.stderr
    text = out.read_text(encoding="utf-8")
    assert text.endswith("\n") and "x.mp4" not in text and len(read_csv(out)) == 4


def test_list_files_and_missing_entries(ckpt, folder, tmp_path, capsys):
    import predict
    lst = tmp_path / "videos.txt"
    rel = os.path.relpath(folder / "more" / "c-short.mp4", tmp_path)
    lst.write_text(f"# my clips\n{rel}\n\nnowhere/gone.mp4\n{folder / 'b-silent.mp4'}\n")
    out = tmp_path / "list.csv"
    assert predict.main([str(lst), "--checkpoint", str(ckpt), "--csv", str(out), "--workers", "0",
                         "--no_progress"]) == 1
    captured = capsys.readouterr()
    rows = read_csv(out)
    assert [r["path"] for r in rows] == [str(folder / "more" / "c-short.mp4"),
                                         str(tmp_path / "nowhere" / "gone.mp4"),
                                         str(folder / "b-silent.mp4")]
    assert [r["status"] for r in rows] == ["ok", "failed", "ok"]
    assert "no such file (listed in" in rows[1]["error"] and "gone.mp4" in captured.err
    # usage errors come before any work: a missing input, a CSV of other classes
    assert predict.main([str(tmp_path / "none.mp4"), "--checkpoint", str(ckpt)]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    other = tmp_path / "other.csv"
    other.write_text("path,top_class,prob_a,prob_b,polarity,positive_prob,status,error\n")
    assert predict.main([str(lst), "--checkpoint", str(ckpt), "--csv", str(other)]) == 2
    assert "other classes (a, b" in capsys.readouterr().err
    assert other.read_text().count("\n") == 1
    assert predict.main([str(folder), "--checkpoint", str(ckpt), "--report", str(tmp_path / "r.png")]) == 2
    assert "--report draws one video" in capsys.readouterr().err


def test_samples_are_prepared_ahead_in_worker_processes(videos):
    """The pool starts on creation and prepares videos without being asked (while the
    model would run); its samples equal those made in this process."""
    import time
    from datasets.video import Samples, prepare
    cfg = dict(TINY)
    order = [str(videos["short"]), str(videos["silent"]), str(videos["sound"])]
    samples = Samples(order, cfg, workers=1)
    try:
        first = samples.pending[0][1]
        deadline = time.time() + 120
        while not first.done() and time.time() < deadline:
            time.sleep(0.2)
        assert first.done()
        got = list(samples)
    finally:
        samples.close()
    assert [v for v, _, _ in got] == order
    for v, sample, why in got:
        assert why is None
        inline, _ = prepare(v, cfg, None)
        np.testing.assert_array_equal(sample["visual"], inline["visual"])
        np.testing.assert_array_equal(sample["audio"], inline["audio"])
        assert sample["snippets"] == inline["snippets"]


@pytest.mark.parametrize("workers", [0, 2], ids=["in_the_main_process", "in_worker_processes"])
def test_ffmpeg_killed_by_a_signal_is_that_videos_failure(ckpt, videos, single, tmp_path, workers):
    """An ffmpeg that dies by a signal on one video (a crash) fails that video's row only:
    also where Jittor is imported (the main process, whose SIGCHLD handler would otherwise
    end the program with a 'quick exit') and in the spawned sample workers."""
    import shutil
    from datasets.media import find_ffmpeg
    d = tmp_path / "clips"
    d.mkdir()
    good = [d / "a-sound.mp4", d / "c-silent.mp4"]
    shutil.copy(videos["sound"], good[0])
    shutil.copy(videos["silent"], good[1])
    crash = d / "b-crash.mp4"
    shutil.copy(videos["sound"], crash)  # a good video: only the fake ffmpeg makes it fail
    fake = tmp_path / "ffmpeg"
    fake.write_text("#!/bin/sh\n"
                    "case \"$*\" in *b-crash*) kill -SEGV $$ ;; esac\n"
                    f"exec '{find_ffmpeg()}' \"$@\"\n")
    fake.chmod(0o755)
    env = dict(os.environ, FFMPEG_BINARY=str(fake))  # how datasets/media.py finds ffmpeg
    out = tmp_path / "predictions.csv"
    r = run(["predict.py", d, "--checkpoint", ckpt, "--csv", out, "--workers", workers,
             "--no_progress"], env=env)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and "quick exit" not in r.stderr, r.stderr
    rows = {row["path"]: row for row in read_csv(out)}
    assert list(rows) == [str(good[0]), str(crash), str(good[1])]
    bad = rows[str(crash)]
    assert bad["status"] == "failed" and bad["top_class"] == ""
    assert "b-crash.mp4" in bad["error"] and "killed by signal 11 (SIGSEGV)" in bad["error"]
    assert "1 of 3 videos could not be predicted" in r.stderr and str(crash) in r.stderr
    for v, name in zip(good, ("sound", "silent")):  # the others as with the real ffmpeg
        s = single[name]
        assert rows[str(v)]["status"] == "ok" and rows[str(v)]["top_class"] == s["prediction"]["class"]
        for c in VE8:
            assert float(rows[str(v)][f"prob_{c}"]) == pytest.approx(s["probabilities"][c], abs=1e-6)
