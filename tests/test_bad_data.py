"""One damaged file among many: the loader's error names the video, the file and the cause;
test.py reports it in a few lines (no traceback, non-zero status, also under MPI: main.py);
``prepare_dataset.py --check`` lists exactly the damaged files; prepare_dataset refuses what
does not decode; an ffmpeg (or audio decoder) that crashes after Jittor was imported is
that file's failure, not the end of the program.

(main.py's side, a damaged frame in training and in evaluation with the checkpoint kept
and resumed exactly, is in test_train.py, next to the uninterrupted run it compares with.)
"""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from datasets.catalog import DATASETS
from tests.helpers import MPI_FLAGS, TINY, mpi_run, needs_mpirun, network_flags

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
VE8 = DATASETS["ve8"]
CRASHING_FFMPEG = "#!/bin/sh\nkill -SEGV $$\n"


def run(args, timeout=300, **kw):
    return subprocess.run([PY, *map(str, args)], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, **kw)


def validation_videos(root):
    """``[(video_id, label)]`` of the test split, in the loader's order."""
    db = json.loads((root / VE8.annotation_file(1)).read_text())["database"]
    return [(v, e["annotations"]["label"]) for v, e in db.items() if e["subset"] == "validation"]


def frames_of(root, video):
    vid, label = video
    return root / VE8.frames_folder / label / vid


def mp3_of(root, video):
    vid, label = video
    return root / VE8.audio_folder / label / f"{vid}.mp3"


def used_frame(root, video):
    """A frame that the evaluation sample of ``video`` reads (TINY: centre crops)."""
    from datasets.media import read_n_frames
    from datasets.sample import frame_indices
    from transforms.temporal import TSN
    n = read_n_frames(frames_of(root, video))
    snippets = TSN(TINY["seq_len"], TINY["snippet_duration"], center=True)(frame_indices(n))
    return frames_of(root, video) / f"{snippets[0][1]:06d}.jpg"


def truncate(path, keep):
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[:keep])


# Each damage: (name, what it does to a video, which file it names, words of the cause)
def _corrupt(root, v):
    f = used_frame(root, v)
    f.write_text("not a jpeg, overwritten by a text editor")
    return f


def _truncated_jpg(root, v):
    f = used_frame(root, v)
    truncate(f, f.stat().st_size // 3)
    return f


def _empty_jpg(root, v):
    f = used_frame(root, v)
    f.write_bytes(b"")
    return f


def _missing(root, v):
    f = used_frame(root, v)
    f.unlink()
    return f


def _mp3_200_bytes(root, v):
    f = mp3_of(root, v)
    truncate(f, 200)
    return f


DAMAGES = [("corrupt frame", _corrupt, "not a JPEG image"),
           ("truncated frame", _truncated_jpg, "a truncated JPEG"),
           ("empty frame", _empty_jpg, "empty (0 bytes)"),
           ("missing frame", _missing, "missing: the folder holds"),
           ("truncated mp3", _mp3_200_bytes, "not decodable (200 bytes)")]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny randomly initialised model with its options (test.py's configuration)."""
    from core.jittor_setup import jt
    from core.checkpoint import save_checkpoint
    from model import generate_model

    jt.set_global_seed(5)
    path = tmp_path_factory.mktemp("bad_data_ckpt") / "tiny.npz"
    save_checkpoint(path, generate_model(TINY).state_dict(), None,
                    {"epoch": 2, "opts": dict(TINY)})
    return path


@pytest.fixture()
def damaged(demo_data, tmp_path):
    """A copy of the demo dataset and ``damage(index, how)`` for its test videos."""
    root = tmp_path / "data"
    shutil.copytree(demo_data, root, ignore=shutil.ignore_patterns("mfcc_cache"))
    videos = validation_videos(root)

    def damage(index, how):
        return how(root, videos[index])
    return root, damage


def _loader(root, n_threads, cache=True):
    from opts import parse_opts
    from datasets.factory import get_validation_set, make_loader
    opt = parse_opts(["--root_path", str(root), "--n_threads", str(n_threads), "--batch_size",
                      "4", "--seq_len", "2", "--snippet_duration", "4", "--sample_size", "32"]
                     + ([] if cache else ["--no_audio_cache"]))
    return make_loader(get_validation_set(opt), opt, shuffle=False)


def test_loader_names_the_video_the_file_and_the_cause(damaged):
    from datasets.errors import SampleError

    root, damage = damaged
    bad = {i: (damage(i, how), words) for i, (_, how, words) in enumerate(DAMAGES)}
    loader = _loader(root, n_threads=2)
    videos = validation_videos(root)
    for i, (path, words) in bad.items():
        with pytest.raises(SampleError) as e:
            loader[i]
        assert e.value.video_id == videos[i][0] and e.value.label == videos[i][1]
        assert e.value.path == str(path) and words in e.value.cause, e.value.cause
        assert e.value.subset == "validation" and "Traceback" in e.value.detail
    assert "NoBackendError" not in e.value.cause  # audioread's empty message is explained
    # Through the workers: the first bad video's error reaches the main process as such,
    # and the workers are stopped, so a second pass starts again and ends the same way.
    for attempt in range(2):
        with pytest.raises(SampleError) as e:
            for _ in loader:
                pass
        assert e.value.path == str(bad[0][0]) and bad[0][1] in e.value.cause
        assert e.value.detail.startswith("in loader worker process")
    # the loader is intact: the good videos still load
    assert loader[len(DAMAGES)][3] == videos[len(DAMAGES)][0]


def _test_py(root, ckpt, out, *extra):
    return run(["test.py", "--resume_path", ckpt, "--root_path", root, "--out", out,
                "--no_progress", *extra])


def _few_lines_no_traceback(proc, *words):
    err = proc.stderr
    assert "Traceback" not in err and "quick exit" not in err, err[-3000:]
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) <= 8, err
    for w in words:
        assert w in err, err


def test_test_py_missing_frame_in_a_worker(damaged, checkpoint, tmp_path):
    root, damage = damaged
    path = damage(1, _missing)
    proc = _test_py(root, checkpoint, tmp_path / "out", "--n_threads", "2")
    assert proc.returncode == 1
    _few_lines_no_traceback(proc, "test.py: cannot read a sample of the test split", str(path),
                            "missing: the folder holds", "--check")
    # --debug shows where it happened: the worker's traceback and the main process's
    proc = _test_py(root, checkpoint, tmp_path / "out", "--n_threads", "2", "--debug")
    assert proc.returncode == 1 and "in loader worker process" in proc.stderr
    assert "Traceback" in proc.stderr and "SampleError" in proc.stderr


def test_test_py_truncated_mp3_single_process(damaged, checkpoint, tmp_path):
    root, damage = damaged
    path = damage(2, _mp3_200_bytes)
    proc = _test_py(root, checkpoint, tmp_path / "out", "--n_threads", "0", "--no_audio_cache")
    assert proc.returncode == 1
    _few_lines_no_traceback(proc, str(path), "not decodable (200 bytes)", "truncated or corrupt")
    assert "NoBackendError" not in proc.stderr and "PySoundFile" not in proc.stderr


def test_n_frames_larger_than_the_frames_on_disk(damaged, checkpoint, tmp_path):
    root, damage = damaged
    folder = damage(0, frames_of)
    last = max(int(p.stem) for p in folder.glob("*.jpg"))
    (folder / "n_frames").write_text(str(last + 15))
    proc = _test_py(root, checkpoint, tmp_path / "out")
    assert proc.returncode == 2
    _few_lines_no_traceback(proc, str(folder / f"{last + 15:06d}.jpg"),
                            f"n_frames says {last + 15}, the folder's frames end at {last:06d}.jpg")


# ---------------------------------------------------------------- --check and extraction
def test_check_lists_exactly_the_damaged_files_and_how_to_redo_them(damaged, demo_data):
    root, damage = damaged
    expected = {str(damage(i, how)) for i, (_, how, _) in enumerate(DAMAGES)}
    # and in training videos: an mp3 cut in half (decodes, but short), an n_frames too large
    db = json.loads((root / VE8.annotation_file(1)).read_text())["database"]
    train = [(v, e["annotations"]["label"]) for v, e in db.items() if e["subset"] == "training"]
    half = mp3_of(root, train[0])
    truncate(half, half.stat().st_size // 2)
    (frames_of(root, train[1]) / "n_frames").write_text("40")
    expected |= {str(half), str(frames_of(root, train[1]) / "n_frames")}

    raw = demo_data.parent / "raw"
    args = ["tools/prepare_dataset.py", "--check", "--dst", root, "--src", raw,
            "--split_dir", raw / "splits", "--workers", "2", "--no_progress"]
    proc = run(args)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    listed = set(re.findall(r"^    (/.+?): ", proc.stdout, re.M))
    assert listed == expected, proc.stdout
    assert "cut short: it decodes to" in proc.stdout and "says 40 frames" in proc.stdout
    # the command given for all of them re-extracts them, after which the check is clean
    redo = proc.stdout.split("all of them at once:\n", 1)[1].splitlines()[0].strip()
    fixed = subprocess.run(redo, shell=True, cwd=REPO, capture_output=True, text=True,
                           timeout=300)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    proc = run(args)
    assert proc.returncode == 0 and "no damaged file found" in proc.stdout, proc.stdout


def test_prepare_refuses_an_extracted_frame_that_does_not_decode(demo_data, tmp_path,
                                                                 ffmpeg_exe):
    # an ffmpeg that writes one broken jpg (a full disk, a bad write...)
    fake = tmp_path / "ffmpeg"
    fake.write_text('#!/bin/sh\n"$REAL_FFMPEG" "$@" || exit $?\nfor last; do :; done\n'
                    'case "$last" in *%06d.jpg) d="${last#file:}"; '
                    'echo broken > "${d%/%06d.jpg}/000003.jpg";; esac\n')
    fake.chmod(0o755)
    raw, out = demo_data.parent / "raw", tmp_path / "imgs"
    proc = run(["tools/video2jpg.py", raw, out, "--class", "Joy", "--ffmpeg", fake,
                "--no_progress"], env={**os.environ, "REAL_FFMPEG": ffmpeg_exe})
    assert proc.returncode == 1
    assert "do not decode" in proc.stdout and "000003.jpg: not a JPEG image" in proc.stdout
    assert not any((out / "Joy").iterdir())  # nothing left that looks finished


# ---------------------------------------------------------------- crashing child processes
def test_a_crashing_child_is_an_exit_status_after_jittor_is_imported(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "ffmpeg"
    fake.write_text(CRASHING_FFMPEG)
    fake.chmod(0o755)
    mp3 = tmp_path / "cut.mp3"
    mp3.write_bytes(b"\xff\xfb\x90\x00" + bytes(196))
    code = f"""
import subprocess
import core.jittor_setup
from core.child_processes import run_child, exit_description
from datasets.audio import mfcc_features
from datasets.errors import UnreadableFile
print("run_child:", exit_description(run_child([{str(fake)!r}]).returncode), flush=True)
try:  # audioread, librosa's second decoder, tries the (crashing) ffmpeg on PATH
    mfcc_features({str(mp3)!r})
except UnreadableFile as e:
    print("audio:", e.cause, flush=True)
subprocess.run([{str(fake)!r}])  # unguarded: Jittor's handler is back and ends the process
print("survived unguarded", flush=True)
"""
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(REPO)}
    proc = subprocess.run([PY, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env=env)
    out = proc.stdout
    assert "run_child: was killed by signal 11 (SIGSEGV): it crashed" in out, proc.stderr
    assert "audio: not decodable" in out, out + proc.stderr
    # positive control: without the guard the same child ends the program, as reported
    assert "survived unguarded" not in out and proc.returncode == 1
    assert "Caught SIGCHLD" in proc.stderr


@pytest.mark.parametrize("signal, when", [("SEGV", "probe"), ("KILL", "frames")])
def test_predict_reports_a_killed_ffmpeg_as_that_video_s_failure(signal, when, tmp_path,
                                                                 checkpoint, make_video,
                                                                 ffmpeg_exe):
    """predict.py (Jittor imported, the model loaded) runs an ffmpeg that dies by a signal,
    on its first call (the probe) or while it writes the frames: the video is reported as
    unreadable, with the signal, by predict.py itself (no traceback, no quick exit)."""
    video = make_video(tmp_path / "clip.mp4", frames=20)
    fake = tmp_path / "ffmpeg"  # found through $FFMPEG_BINARY, as datasets/media.py looks
    dies_on = "*" if when == "probe" else "*%06d.jpg*"  # any call, or the frames' call
    fake.write_text(f'#!/bin/sh\ncase "$*" in {dies_on}) kill -{signal} $$;; esac\n'
                    f'exec "{ffmpeg_exe}" "$@"\n')
    fake.chmod(0o755)
    proc = run(["predict.py", video, "--checkpoint", checkpoint],
               env={**os.environ, "FFMPEG_BINARY": str(fake)})
    out = proc.stdout + proc.stderr
    # 2: predict.py's status for a video it cannot read (1 where it predicts many videos);
    # Jittor's quick exit would be 1 too, so the message is what shows the program survived
    assert proc.returncode in (1, 2), out
    assert "Traceback" not in out and "quick exit" not in out and "Caught SIG" not in out, out
    number = {"SEGV": 11, "KILL": 9}[signal]
    assert re.search(rf"predict\.py: error: .*{re.escape(str(video))}", proc.stderr), out
    assert f"ffmpeg was killed by signal {number} (SIG{signal})" in proc.stderr, out


# ---------------------------------------------------------------- under MPI
@needs_mpirun
@pytest.mark.slow
def test_mpi_evaluation_error_names_the_rank_and_keeps_the_epoch(damaged, tmp_path):
    from core.checkpoint import load_checkpoint

    root, damage = damaged
    path = damage(3, _corrupt)
    proc = mpi_run(["main.py", "--root_path", str(root), "--result_path", str(tmp_path / "results"),
                    "--expr_name", "mpi", "--n_epochs", "2", *network_flags(TINY), *MPI_FLAGS],
                   np_=2, check=False)
    err = proc.stdout + proc.stderr
    assert proc.returncode != 0, err[-3000:]
    rank = re.search(r"rank ([01]): main.py: cannot read a sample during epoch 1's evaluation",
                     err)
    assert rank, err[-3000:]
    saved = tmp_path / "results" / "mpi" / "save_1.npz"
    for line in (f"  file   {path}", "  cause  not a JPEG image",
                 f"Epoch 1's training is saved in {saved}."):
        assert f"rank {rank.group(1)}: {line}" in err, err[-3000:]
    assert "Traceback" not in err
    assert load_checkpoint(saved)["meta"]["evaluated"] is False
