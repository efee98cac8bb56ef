"""Check a prepared dataset: decode every frame and every mp3, list each damaged file.

Usage (from the repository root)::

    python tools/prepare_dataset.py --check --dst ROOT --dataset ve8
    python tools/prepare_dataset.py --check --dst ROOT --src RAW      # commands name RAW
    python tools/check_dataset.py --dst ROOT --dataset ek6 --workers 8

Every video of the annotation json (both subsets) is checked, in parallel (``--workers``
processes) with a progress bar, with the loader's own readers (``datasets.sample.read_frame``,
``datasets.audio.load_audio``):

- its ``n_frames`` file (readable, and not larger than the frames on disk);
- each jpg of its frame folder: present from 000001.jpg to ``n_frames``, decodable;
- its mp3: decodable, with samples, and not shorter than its own header says (a download
  or copy cut short still decodes, to the part that arrived).

Each damaged file is listed with its cause and the command that re-extracts its video
(remove the damaged output, re-run ``prepare_dataset.py``, which redoes only what is
missing); the exit status is 1 when any is found, 0 otherwise. ``prepare_dataset.py``
runs the same checks on each video it extracts, so this finds what went bad afterwards.
"""
import os
import shlex
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets.catalog import DATASETS, AnnotationError, read_annotation  # noqa: E402
from datasets.errors import UnreadableFile  # noqa: E402
from datasets.media import (N_FRAMES_FILE, frame_file, list_frame_indices,  # noqa: E402
                            read_n_frames)

# A cut-short mp3 decodes to fewer samples than its header counts; allow 1 % and two
# MPEG frames (1152 samples each) for decoders that count the priming samples differently.
_SHORT_FRACTION, _SHORT_SAMPLES = 0.01, 2 * 1152


@dataclass
class Damage:
    """One damaged file of video ``key`` ("Class/id"); ``output`` is the frame folder or mp3
    that must be made again."""
    key: str
    path: str
    cause: str
    output: str


# --------------------------------------------------------------------------- checks of one video
def frame_damage(video_dir) -> List[tuple]:
    """``[(path, cause)]`` of the damaged files of one frame folder (``[]``: none)."""
    return _frame_damage(video_dir)[0]


def _frame_damage(video_dir):
    """``(frame_damage's list, the number of frames in the folder)``."""
    from datasets.sample import read_frame

    video_dir = os.fspath(video_dir)
    if not os.path.isdir(video_dir):
        return [(video_dir, "frame folder missing")], 0
    found = list_frame_indices(video_dir)
    problems = []
    counter = os.path.join(video_dir, N_FRAMES_FILE)
    try:
        n_frames = read_n_frames(video_dir)
    except FileNotFoundError:
        n_frames = None
        problems.append((counter, "missing"))
    except (OSError, ValueError) as e:
        n_frames = None
        problems.append((counter, f"unreadable ({e})"))
    if n_frames and n_frames > 0:
        last = found[-1] if found else 0
        if n_frames > last:
            problems.append((counter, f"says {n_frames} frames, but the folder's frames end at "
                                      f"{last:06d}.jpg" if last else
                             f"says {n_frames} frames, but the folder holds none"))
        on_disk = set(found)
        problems += [(frame_file(video_dir, i), "missing")
                     for i in range(1, min(n_frames, last) + 1) if i not in on_disk]
    for i in found:
        try:
            read_frame(frame_file(video_dir, i))
        except UnreadableFile as e:
            problems.append((e.path, e.cause))
    return problems, len(found)


def audio_damage(mp3) -> Optional[str]:
    """Why the sound file ``mp3`` is damaged, or None when it is sound."""
    import soundfile
    from datasets.audio import load_audio

    try:
        samples, rate = load_audio(mp3, sr=None)
    except UnreadableFile as e:
        return e.cause
    try:
        declared = soundfile.info(os.fspath(mp3)).frames
    except Exception:  # noqa: BLE001  (read by audioread: no header count to compare)
        return None
    if declared > 0 and len(samples) < declared * (1 - _SHORT_FRACTION) - _SHORT_SAMPLES:
        return (f"cut short: it decodes to {len(samples) / rate:.2f} s of the "
                f"{declared / rate:.2f} s its header declares")
    return None


def _check_video(key, video_dir, mp3):
    problems, frames = _frame_damage(video_dir)
    damage = [Damage(key, p, cause, video_dir) for p, cause in problems]
    if mp3 is not None:
        cause = audio_damage(mp3)
        if cause:
            damage.append(Damage(key, mp3, cause, mp3))
    return damage, frames


def _quiet_worker():
    """Check processes keep the decoders' own stderr lines (mpg123's notes on a bad mp3)
    off the terminal: every problem comes back as a Damage."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)


# --------------------------------------------------------------------------- the whole dataset
def videos_of(root, dataset, split=1, audio=True):
    """``[(key "Class/id", frame folder, mp3 or None)]`` of every video of the annotation."""
    facts = DATASETS[dataset]
    _, database = read_annotation(Path(root) / facts.annotation_file(split))
    out = []
    for video_id, info in database.items():
        label = (info.get("annotations") or {}).get("label")
        if label is None:
            continue
        out.append((f"{label}/{video_id}", os.path.join(root, facts.frames_folder, label, video_id),
                    os.path.join(root, facts.audio_folder, label, video_id + ".mp3") if audio else None))
    return sorted(out)


def check(videos, workers, progress=True):
    """``(damages, n_frames_checked)`` over ``videos`` (``videos_of``), in ``workers``
    processes with a progress bar."""
    from tqdm import tqdm

    damages, frames = [], 0
    with ProcessPoolExecutor(max_workers=max(1, workers), initializer=_quiet_worker) as pool:
        futures = [pool.submit(_check_video, *v) for v in videos]
        bar = tqdm(total=len(futures), desc="check", unit="video", disable=not progress,
                   dynamic_ncols=True, file=sys.stderr)
        for fut in as_completed(futures):
            found, n = fut.result()
            damages += found
            frames += n
            bar.update(1)
        bar.close()
    return sorted(damages, key=lambda d: (d.key, d.path)), frames


def redo_command(outputs, root, args) -> str:
    """The shell command that makes ``outputs`` (frame folders, mp3 files) again."""
    flags = [f"--src {shlex.quote(args.src) if args.src else 'RAW'}", f"--dst {shlex.quote(str(root))}",
             f"--dataset {args.dataset}"]
    if getattr(args, "split_dir", None):
        flags.append(f"--split_dir {shlex.quote(args.split_dir)}")
    if getattr(args, "split", 1) != 1:
        flags.append(f"--split {args.split}")
    script = Path(__file__).resolve().with_name("prepare_dataset.py")
    try:
        script = script.relative_to(Path.cwd())
    except ValueError:  # not under the current folder: keep it absolute
        pass
    return (f"rm -rf -- {' '.join(shlex.quote(o) for o in sorted(set(outputs)))} && "
            f"{shlex.quote(sys.executable)} {shlex.quote(str(script))} {' '.join(flags)}")


def run(args) -> int:
    """The check of ``args.dst`` (options of ``add_check_options``); returns the exit status."""
    root = Path(args.dst)
    start = time.time()
    try:
        videos = videos_of(root, args.dataset, args.split, audio=not getattr(args, "no_audio", False))
    except AnnotationError as e:  # it names the file
        print(f"error: {e}; prepare the dataset first", file=sys.stderr)
        return 2
    damages, frames = check(videos, args.workers, not args.no_progress)
    n_mp3 = sum(1 for v in videos if v[2] is not None)
    print(f"checked {len(videos)} videos of {root} ({frames} frames, {n_mp3} mp3 files) in "
          f"{time.time() - start:.1f}s")
    if not damages:
        print("no damaged file found")
        return 0
    keys = sorted({d.key for d in damages})
    print(f"DAMAGED: {len(damages)} file(s) of {len(keys)} video(s):")
    for key in keys:
        mine = [d for d in damages if d.key == key]
        print(f"  {key}")
        for d in mine:
            print(f"    {d.path}: {d.cause}")
        print(f"    re-extract: {redo_command([d.output for d in mine], root, args)}")
    if len(keys) > 1:
        print(f"all of them at once:\n  {redo_command([d.output for d in damages], root, args)}")
    if not args.src:
        print("(RAW: the folder of raw videos the dataset was prepared from)")
    return 1


def add_check_options(parser, dst_required=True) -> None:
    """The options ``run`` reads, but for ``--dataset``/``--split``/``--split_dir``."""
    parser.add_argument("--dst", required=dst_required, help="the prepared dataset's root (ROOT)")
    parser.add_argument("--src", default=None,
                        help="raw dataset folder, named in the re-extraction commands")


def main(argv=None) -> int:
    from tools.jobs import add_common_args, tool_parser
    from tools.ve8_json import add_split_options

    parser = tool_parser("Decode every frame and mp3 of a prepared dataset; list each damaged "
                         "file with the command that re-extracts its video.")
    add_check_options(parser)
    add_split_options(parser)
    add_common_args(parser, ffmpeg=False)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
