"""Write the ``n_frames`` file of every frame folder: DIR/<Class>/<video_id>/n_frames.

Usage (from the repository root)::

    python tools/n_frames.py ROOT/VideoEmotion8--imgs
    python tools/n_frames.py ROOT/VideoEmotion8--imgs --class Joy

``n_frames`` holds the largest frame index of the ``NNNNNN.jpg`` files, or 0 when the
folder holds fewer than 16 jpgs (such a video is left out of the dataset), as in the
release. ``tools/video2jpg.py`` already writes it; this script (re)computes it for
folders made by other tools. Safe to re-run: a file whose content is already right is not
rewritten (its mtime stays); writes are atomic. Hidden ``.partial`` folders are ignored.
"""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets.media import stored_n_frames, write_n_frames  # noqa: E402
from tools.jobs import Result, add_common_args, print_summary, run_parallel, tool_parser  # noqa: E402


def n_frames_job(key: str, directory) -> Result:
    """Status ``done`` when the file was (re)written, ``skipped`` when it was right."""
    before = stored_n_frames(directory)
    value = write_n_frames(directory)
    return Result(key, "skipped" if before == value else "done", value=value)


def video_dirs(root, classes=None):
    """``[(key "Class/id", folder)]`` of the video folders under ``root``."""
    root = Path(root)
    cdirs = [root / c for c in classes] if classes else sorted(
        p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    out = []
    for cdir in cdirs:
        if not cdir.is_dir():
            raise FileNotFoundError(f"no class folder {cdir}")
        for entry in sorted(os.scandir(cdir), key=lambda e: e.name):
            if entry.is_dir() and not entry.name.startswith("."):
                out.append((f"{cdir.name}/{entry.name}", Path(entry.path)))
    return out


def main(argv=None) -> int:
    parser = tool_parser("Write DIR/<Class>/<video_id>/n_frames (largest frame index; 0 if fewer "
                         "than 16 jpgs).")
    parser.add_argument("dir", help="frames folder, e.g. ROOT/VideoEmotion8--imgs")
    parser.add_argument("--class", dest="classes", action="append", metavar="NAME",
                        help="only this class folder (repeatable; default: every class)")
    add_common_args(parser, ffmpeg=False)
    args = parser.parse_args(argv)
    if not Path(args.dir).is_dir():
        parser.error(f"no such folder: {args.dir}")
    try:
        jobs = video_dirs(args.dir, args.classes)
    except FileNotFoundError as e:
        parser.error(str(e))
    results = run_parallel(n_frames_job, jobs, args.workers, "n_frames", not args.no_progress)
    zero = sorted(r.key for r in results if r.status != "failed" and r.value == 0)
    failed = print_summary(f"n_frames {args.dir}", results,
                           {"n_frames 0 (fewer than 16 frames, left out of the dataset)": zero})
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
