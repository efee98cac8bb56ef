"""Extract the frames of every video of a raw dataset: SRC/<Class>/<id>.mp4 -> DST/<Class>/<id>/%06d.jpg.

Usage (from the repository root)::

    python tools/video2jpg.py RAW ROOT/VideoEmotion8--imgs
    python tools/video2jpg.py RAW ROOT/VideoEmotion8--imgs --class Anger --class Joy --workers 4
    python tools/video2jpg.py RAW ROOT/VideoEmotion8--imgs --verify   # also re-check finished folders

Each video: ``ffmpeg -i VIDEO -vf scale=-1:240 DIR/%06d.jpg`` (height 240, aspect kept,
numbering from 000001), plus the ``n_frames`` file (largest index; 0 below 16 frames).
All class folders are done in parallel (``--workers``, default: number of cores).

Safe to re-run: a video is extracted into ``DST/<Class>/.<id>.partial`` and renamed to
``<id>`` only when ffmpeg succeeded, so a folder under its real name is finished and is
skipped; leftover ``.partial`` folders (an interrupted run) are removed and redone; a folder
with gaps in its numbering or a truncated last jpg (e.g. from an older tool) is redone.
``--verify`` also decodes each video to check that a finished folder has every frame.
A video ffmpeg cannot read is reported and skipped; the run then exits with status 1
and lists the failures. Finished output is never deleted.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets.media import (count_frames, extract_frames, frames_complete,  # noqa: E402
                            read_n_frames, write_n_frames)
from tools.jobs import Result, print_summary, raw_videos_cli, run_parallel  # noqa: E402


def frames_job(key: str, video, out_dir, ffmpeg=None, verify: bool = False) -> Result:
    """Extract one video unless ``out_dir`` is already complete. Result.value = n_frames."""
    out_dir = Path(out_dir)
    existed = out_dir.is_dir() and any(out_dir.iterdir())
    expected = count_frames(video, ffmpeg) if (verify and existed) else None
    if existed and frames_complete(out_dir, expected):
        return Result(key, "skipped", value=write_n_frames(out_dir))
    extract_frames(video, out_dir, ffmpeg=ffmpeg, overwrite=existed)
    return Result(key, "redone" if existed else "done", value=read_n_frames(out_dir))


def short_videos(results):
    """Keys of videos whose n_frames is 0 (fewer than 16 frames: left out of the dataset)."""
    return sorted(r.key for r in results if r.status != "failed" and r.value == 0)


def main(argv=None) -> int:
    args, ffmpeg, jobs = raw_videos_cli(
        "Extract frames (scale=-1:240, %06d.jpg) and n_frames of every video in "
        "SRC/<Class>/ into DST/<Class>/<video_id>/.",
        "frames folder, e.g. ROOT/VideoEmotion8--imgs", argv,
        extra_args=lambda p: p.add_argument(
            "--verify", action="store_true",
            help="decode every video to check finished folders hold all its frames"))
    jobs = [(key, video, out, ffmpeg, args.verify) for key, video, out in jobs]
    results = run_parallel(frames_job, jobs, args.workers, "frames", not args.no_progress)
    failed = print_summary(f"video2jpg {args.src} -> {args.dst}", results,
                           {"fewer than 16 frames (n_frames 0)": short_videos(results)})
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
