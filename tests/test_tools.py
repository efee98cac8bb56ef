"""Dataset preparation: the ffmpeg library (datasets/media.py) and the tools (tools/), real
ffmpeg on tiny synthetic videos."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from datasets.catalog import DATASETS  # noqa: E402
from datasets.media import (MediaError, count_frames, extract_audio, extract_frames,  # noqa: E402
                            find_ffmpeg, frames_complete, list_frame_indices, probe,
                            read_n_frames, stored_n_frames, write_n_frames)
from tests.helpers import mtimes  # noqa: E402
from tools.jobs import print_list  # noqa: E402
from tools.ve8_json import read_splits  # noqa: E402

VE8 = DATASETS["ve8"]

SCRIPTS = ["video2jpg.py", "video2mp3.py", "n_frames.py", "ve8_json.py", "prepare_dataset.py",
           "make_demo_dataset.py"]
ODD_ID = "It's a clip, no. 1 - (take 2)"  # space, comma, quote, dot, hyphen, brackets


def run_tool(script, *args):
    return subprocess.run([sys.executable, str(REPO / "tools" / script), *map(str, args)],
                          cwd=str(REPO), capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def raw(tmp_path_factory, make_video):
    """RAW/<Class>/<id>.mp4: normal videos, an odd id, a short one, a silent one, a corrupt one."""
    root = tmp_path_factory.mktemp("raw")
    make_video(root / "Anger" / f"{ODD_ID}.mp4", frames=30, fps=25, size=(128, 96))
    make_video(root / "Anger" / "short.mp4", frames=10, fps=25, size=(128, 96))
    make_video(root / "Joy" / "wide.mkv", frames=20, fps=20, size=(100, 50))
    make_video(root / "Joy" / "mute.mp4", frames=40, fps=20, size=(128, 96), audio=False)
    (root / "Joy" / "broken.mp4").write_bytes(os.urandom(4096))
    (root / "Joy" / "notes.txt").write_text("not a video")
    return root


# ------------------------------------------------------------------ media library
def test_find_ffmpeg_overrides(monkeypatch, ffmpeg_exe):
    assert Path(find_ffmpeg()).is_file()
    assert find_ffmpeg(ffmpeg_exe) == ffmpeg_exe
    monkeypatch.setenv("FFMPEG_BINARY", ffmpeg_exe)
    assert find_ffmpeg() == ffmpeg_exe
    monkeypatch.setenv("FFMPEG_BINARY", "/nonexistent/ffmpeg")
    with pytest.raises(MediaError):
        find_ffmpeg()


def test_probe(raw):
    info = probe(raw / "Anger" / f"{ODD_ID}.mp4")
    assert info.has_video and info.has_audio
    assert (info.width, info.height, info.fps) == (128, 96, 25.0)
    assert info.duration == pytest.approx(1.2, abs=0.05)
    mute = probe(raw / "Joy" / "mute.mp4")
    assert mute.has_video and not mute.has_audio
    assert mute.duration == pytest.approx(2.0, abs=0.05)
    with pytest.raises(MediaError):
        probe(raw / "Joy" / "broken.mp4")


def test_extract_frames_count_size_and_n_frames(raw, tmp_path):
    out = tmp_path / "a%d b" / ODD_ID  # '%' must not be read as an image2 pattern
    assert extract_frames(raw / "Anger" / f"{ODD_ID}.mp4", out) == 30
    assert list_frame_indices(out) == list(range(1, 31))
    assert sorted(os.listdir(out))[0] == "000001.jpg"
    assert Image.open(out / "000001.jpg").size == (320, 240)  # 4:3 -> height 240
    assert (out / "n_frames").read_text() == "30"
    assert count_frames(raw / "Anger" / f"{ODD_ID}.mp4") == 30
    assert [p.name for p in out.parent.iterdir()] == [ODD_ID]  # no partial left

    wide = tmp_path / "wide"
    assert extract_frames(raw / "Joy" / "wide.mkv", wide) == 20
    assert Image.open(wide / "000020.jpg").size == (480, 240)  # 2:1 -> 480x240
    assert read_n_frames(wide) == 20

    short = tmp_path / "short"
    assert extract_frames(raw / "Anger" / "short.mp4", short) == 10
    assert len(list_frame_indices(short)) == 10
    assert (short / "n_frames").read_text() == "0"  # fewer than 16 jpgs

    # an existing empty folder (e.g. mkdtemp) is filled
    empty = tmp_path / "empty"
    empty.mkdir()
    assert extract_frames(raw / "Anger" / "short.mp4", empty) == 10

    with pytest.raises(MediaError):
        extract_frames(raw / "Joy" / "broken.mp4", tmp_path / "broken")
    assert not (tmp_path / "broken").exists() and not (tmp_path / ".broken.partial").exists()


def test_write_n_frames_rules(tmp_path):
    d = tmp_path / "v"
    d.mkdir()
    for i in (1, 2, 3, 5):  # only 4 jpgs -> 0
        (d / f"{i:06d}.jpg").write_bytes(b"x")
    assert write_n_frames(d) == 0 and (d / "n_frames").read_text() == "0"
    for i in range(6, 21):  # 19 jpgs, largest index 20
        (d / f"{i:06d}.jpg").write_bytes(b"x")
    (d / "image_00099.jpg").write_bytes(b"x")  # not a frame name
    assert write_n_frames(d) == 20 and (d / "n_frames").read_text() == "20"
    before = (d / "n_frames").stat().st_mtime_ns
    assert write_n_frames(d) == 20
    assert (d / "n_frames").stat().st_mtime_ns == before  # unchanged -> not rewritten
    assert not [n for n in os.listdir(d) if n.startswith(".")]  # no temporary file left


def test_n_frames_is_read_as_the_release_reads_it(tmp_path):
    for text, value in (("30", 30), ("30\n", 30), (" 17.0 ", 17), ("0", 0)):
        (tmp_path / "n_frames").write_text(text)
        assert read_n_frames(tmp_path) == value == stored_n_frames(tmp_path)
    for text in ("many", "", "nan", "inf"):
        (tmp_path / "n_frames").write_text(text)
        with pytest.raises(ValueError, match="n_frames"):
            read_n_frames(tmp_path)
        assert stored_n_frames(tmp_path) is None
    (tmp_path / "n_frames").unlink()
    with pytest.raises(OSError):
        read_n_frames(tmp_path)
    assert stored_n_frames(tmp_path) is None


def test_print_list_cuts_long_lists(capsys):
    print_list([f"v{i}" for i in range(5)], limit=3)
    assert capsys.readouterr().out.splitlines() == ["    v0", "    v1", "    v2",
                                                    "    ... and 2 more"]
    print_list(["a", "b"], limit=2, indent="  ")
    assert capsys.readouterr().out.splitlines() == ["  a", "  b"]


def test_silent_mp3_for_video_without_sound(raw, tmp_path):
    mp3 = tmp_path / "mute.mp3"
    assert extract_audio(raw / "Joy" / "mute.mp4", mp3) is False
    info = probe(mp3)
    assert info.has_audio and not info.has_video
    assert info.duration == pytest.approx(2.0, abs=0.15)
    loud = tmp_path / f"{ODD_ID}.mp3"
    assert extract_audio(raw / "Anger" / f"{ODD_ID}.mp4", loud) is True
    assert probe(loud).duration == pytest.approx(1.2, abs=0.15)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mp3.name, loud.name])


# ------------------------------------------------------------------ split lists -> json
def test_json_from_tiny_split(tmp_path):
    d = tmp_path / "splits"
    d.mkdir()
    (d / "classInd.txt").write_text("1 Anger\n2 Joy\n3 Trust")  # no final newline
    (d / "trainlist01.txt").write_bytes(
        f"Joy/{ODD_ID} 2\r\nAnger/a,b-c 1\r\n\r\nTrust/t1 3\r\n".encode())
    (d / "testlist01.txt").write_text("Anger/x y, z\nJoy/11.01.09-j,PA 2\nTrust/t2")
    dst = tmp_path / "out" / "ve8_01.json"
    r = run_tool("ve8_json.py", "--split_dir", d, "--dst", dst)
    assert r.returncode == 0, r.stderr
    got = json.loads(dst.read_text(encoding="utf-8"))
    ann = lambda s, c: {"subset": s, "annotations": {"label": c}}  # noqa: E731
    # classes that are not a known dataset's: their polarity is not known
    assert got == {"labels": ["Anger", "Joy", "Trust"], "positive_classes": None, "database": {
        ODD_ID: ann("training", "Joy"), "a,b-c": ann("training", "Anger"),
        "t1": ann("training", "Trust"), "x y, z": ann("validation", "Anger"),
        "11.01.09-j,PA": ann("validation", "Joy"), "t2": ann("validation", "Trust")}}
    assert list(got["database"]) == [ODD_ID, "a,b-c", "t1", "x y, z", "11.01.09-j,PA", "t2"]
    before = dst.stat().st_mtime_ns
    assert run_tool("ve8_json.py", "--split_dir", d, "--dst", dst).returncode == 0
    assert dst.stat().st_mtime_ns == before  # same content: not rewritten


def test_json_shipped_lists():
    ve8 = read_splits(VE8.split_dir).annotation()
    assert ve8["labels"] == ["Anger", "Anticipation", "Disgust", "Fear", "Joy", "Sadness",
                             "Surprise", "Trust"]
    assert ve8["positive_classes"] == ["Anticipation", "Joy", "Surprise", "Trust"]
    subsets = [v["subset"] for v in ve8["database"].values()]
    # 732 + 367 lines; one id is listed under two classes, kept once (the later label)
    assert (subsets.count("training"), subsets.count("validation")) == (731, 367)
    assert ve8["database"]["3527012618_7ceb8fb27b_700"]["annotations"]["label"] == "Fear"
    ek6 = read_splits(DATASETS["ek6"].split_dir).annotation()
    assert ek6["labels"] == ["anger", "disgust", "fear", "joy", "sadness", "surprise"]
    assert ek6["positive_classes"] == ["joy", "surprise"]
    assert len(ek6["database"]) == 1637
    assert ek6["database"]["1000"] == {"subset": "training", "annotations": {"label": "anger"}}
    assert ek6["database"]["1001"]["subset"] == "validation"


# ------------------------------------------------------------------ command-line scripts
@pytest.mark.parametrize("script", SCRIPTS)
def test_help(script):
    r = run_tool(script, "--help")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage:") and "--help" in r.stdout


def test_video2jpg_cli_corrupt_rerun_and_interrupt(raw, tmp_path):
    dst = tmp_path / "imgs"
    r = run_tool("video2jpg.py", raw, dst, "--workers", "2")
    assert r.returncode == 1, r.stdout + r.stderr  # the corrupt video fails ...
    assert "FAILED: 1" in r.stdout and "Joy/broken" in r.stdout
    assert "4 done" in r.stdout and "fewer than 16 frames (n_frames 0): 1" in r.stdout
    # ... and the others finish
    assert read_n_frames(dst / "Anger" / ODD_ID) == 30
    assert read_n_frames(dst / "Anger" / "short") == 0
    assert read_n_frames(dst / "Joy" / "wide") == 20
    assert read_n_frames(dst / "Joy" / "mute") == 40
    assert sorted(os.listdir(dst / "Joy")) == ["mute", "wide"]  # nothing for broken, no partial

    # re-run: finished videos are skipped, nothing is touched
    before = mtimes(dst)
    r = run_tool("video2jpg.py", raw, dst, "--workers", "2", "--class", "Anger")
    assert r.returncode == 0 and "2 skipped" in r.stdout, r.stdout + r.stderr
    assert mtimes(dst) == before

    # interrupted runs: a leftover partial, a folder with a gap, a truncated last jpg
    partial = dst / "Anger" / ".short.partial"
    partial.mkdir()
    (partial / "000001.jpg").write_bytes(b"junk")
    (dst / "Anger" / ODD_ID / "000007.jpg").unlink()
    last = dst / "Joy" / "mute" / "000040.jpg"
    last.write_bytes(last.read_bytes()[:100])
    assert not frames_complete(dst / "Joy" / "mute")
    r = run_tool("video2jpg.py", raw, dst, "--workers", "2")
    assert r.returncode == 1
    assert "2 redone" in r.stdout and "2 skipped" in r.stdout, r.stdout
    assert not partial.exists()
    assert list_frame_indices(dst / "Anger" / ODD_ID) == list(range(1, 31))
    assert frames_complete(dst / "Joy" / "mute") and read_n_frames(dst / "Joy" / "mute") == 40
    assert sorted(os.listdir(dst / "Anger")) == [ODD_ID, "short"]
    unchanged = {k: v for k, v in mtimes(dst).items() if k.startswith(("Joy/wide", "Anger/short"))}
    assert unchanged == {k: v for k, v in before.items() if k.startswith(("Joy/wide", "Anger/short"))}

    # --verify finds a folder that looks complete but lacks its last frames
    wide = dst / "Joy" / "wide"
    for i in (19, 20):
        (wide / f"{i:06d}.jpg").unlink()
    write_n_frames(wide)
    r = run_tool("video2jpg.py", raw, dst, "--class", "Joy", "--workers", "2")
    assert "2 skipped" in r.stdout and read_n_frames(wide) == 18  # plausible without --verify
    r = run_tool("video2jpg.py", raw, dst, "--class", "Joy", "--workers", "2", "--verify")
    assert "1 redone" in r.stdout and "1 skipped" in r.stdout, r.stdout
    assert read_n_frames(wide) == 20


def test_n_frames_cli(tmp_path):
    root = tmp_path / "imgs"
    for name, n in (("A/long", 20), ("A/short", 5), ("B/x, y", 16)):
        d = root / name
        d.mkdir(parents=True)
        for i in range(1, n + 1):
            (d / f"{i:06d}.jpg").write_bytes(b"x")
    (root / "A" / ".leftover.partial").mkdir()
    r = run_tool("n_frames.py", root, "--workers", "2")
    assert r.returncode == 0, r.stderr
    assert "3 done" in r.stdout and "A/short" in r.stdout
    assert [(root / n / "n_frames").read_text() for n in ("A/long", "A/short", "B/x, y")] == ["20", "0", "16"]
    assert not (root / "A" / ".leftover.partial" / "n_frames").exists()
    before = mtimes(root)
    r = run_tool("n_frames.py", root, "--class", "A")
    assert "2 skipped" in r.stdout and mtimes(root) == before


def test_video2mp3_cli(raw, tmp_path):
    dst = tmp_path / "mp3"
    r = run_tool("video2mp3.py", raw, dst, "--workers", "2")
    assert r.returncode == 1
    assert "3 done" in r.stdout and "1 silent" in r.stdout and "1 failed" in r.stdout, r.stdout
    assert "Joy/mute" in r.stdout and "Joy/broken" in r.stdout
    assert sorted(os.listdir(dst / "Joy")) == ["mute.mp3", "wide.mp3"]
    assert probe(dst / "Joy" / "mute.mp3").duration == pytest.approx(2.0, abs=0.15)
    assert probe(dst / "Anger" / f"{ODD_ID}.mp3").has_audio
    (dst / "Anger" / ".short.mp3.partial").write_bytes(b"cut off")
    before = mtimes(dst)
    r = run_tool("video2mp3.py", raw, dst, "--class", "Anger", "--class", "Joy")
    assert "4 skipped" in r.stdout, r.stdout
    after = mtimes(dst)
    del before["Anger/.short.mp3.partial"]
    assert after == before  # partial removed, finished files untouched


def test_demo_dataset_and_prepare(demo_build, tmp_path):
    """The session's demo dataset (tests/conftest.py: made and prepared by the tools with
    2 training and 1 test video of 1 s per class), then a re-run of the preparation on a
    copy."""
    raw, root = demo_build["raw"], demo_build["root"]
    classes = list(VE8.classes.names)
    assert sorted(p.name for p in raw.iterdir()) == sorted(classes + ["splits"])
    assert sorted(os.listdir(raw / "Joy")) == ["Joy's demo, test no.00.mp4",
                                               "Joy's demo, train no.00.mp4", "joy-train-01.mp4"]
    splits = raw / "splits"
    assert (splits / "classInd.txt").read_text().splitlines() == [f"{i + 1} {c}" for i, c in enumerate(classes)]
    train = (splits / "trainlist01.txt").read_text().splitlines()
    assert len(train) == 16 and "Joy/joy-train-01 5" in train and "Anger/Anger's demo, train no.00 1" in train
    test = (splits / "testlist01.txt").read_text().splitlines()
    assert len(test) == 8 and "Trust/Trust's demo, test no.00" in test
    info = probe(raw / "Fear" / "fear-train-01.mp4")
    assert (info.width, info.height, info.fps, info.has_audio) == (320, 240, 30.0, True)
    assert info.duration == pytest.approx(1.0, abs=0.1)

    assert "24 done" in demo_build["prepare"]
    imgs, mp3s, ann_file = root / VE8.frames_folder, root / VE8.audio_folder, root / VE8.annotation_file(1)
    assert demo_build["root_listing"] == sorted(p.name for p in (imgs, mp3s, ann_file))
    ann = json.loads(ann_file.read_text(encoding="utf-8"))
    assert ann["labels"] == classes and len(ann["database"]) == 24
    assert ann["positive_classes"] == list(VE8.classes.positive)
    assert ann["database"]["Joy's demo, test no.00"] == {"subset": "validation", "annotations": {"label": "Joy"}}
    assert ann["database"]["joy-train-01"] == {"subset": "training", "annotations": {"label": "Joy"}}
    for vid, v in ann["database"].items():
        cls = v["annotations"]["label"]
        assert read_n_frames(imgs / cls / vid) == 30
        assert probe(mp3s / cls / f"{vid}.mp3").has_audio
    img = Image.open(imgs / "Joy" / "joy-train-01" / "000030.jpg")
    assert img.size == (320, 240)

    # a listed video without a file is named; the rest is skipped on the re-run (of a
    # copy: the session's dataset stays as it is)
    splits = shutil.copytree(splits, tmp_path / "splits")
    root = shutil.copytree(root, tmp_path / "root", ignore=shutil.ignore_patterns("mfcc_cache"))
    imgs, ann_file = root / VE8.frames_folder, root / VE8.annotation_file(1)
    with open(splits / "trainlist01.txt", "a") as f:
        f.write("Joy/ghost, video 5\n")
    before = mtimes(imgs)
    r = run_tool("prepare_dataset.py", "--src", raw, "--dst", root, "--split_dir", splits, "--workers", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "listed videos with no video file" in r.stderr and "Joy/ghost, video" in r.stderr
    assert "24 skipped" in r.stdout
    assert (root / "ve8_missing_videos.txt").read_text() == "Joy/ghost, video\n"
    assert mtimes(imgs) == before
    assert json.loads(ann_file.read_text())["database"]["ghost, video"]["subset"] == "training"
    r = run_tool("prepare_dataset.py", "--src", raw, "--dst", root, "--split_dir", splits, "--strict",
                 "--no_progress")
    assert r.returncode == 1


def test_demo_dataset_is_deterministic(tmp_path):
    digests = []
    for name in ("a", "b"):
        r = run_tool("make_demo_dataset.py", "--dst", tmp_path / name, "--per_class_train", "1",
                     "--per_class_test", "0", "--seconds", "0.5", "--seed", "3", "--workers", "2")
        assert r.returncode == 0, r.stderr
        digests.append({p.relative_to(tmp_path / name): p.read_bytes()
                        for p in sorted((tmp_path / name).rglob("*")) if p.is_file()})
    assert len(digests[0]) == 8 + 3 and digests[0] == digests[1]
