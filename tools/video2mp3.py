"""Extract the sound of every video of a raw dataset: SRC/<Class>/<id>.mp4 -> DST/<Class>/<id>.mp3.

Usage (from the repository root)::

    python tools/video2mp3.py RAW ROOT/VideoEmotion8--mp3
    python tools/video2mp3.py RAW ROOT/VideoEmotion8--mp3 --class Fear --workers 4

Each video: ``ffmpeg -i VIDEO -vn OUT.mp3`` (ffmpeg's default mp3 encoding of the default
audio stream, as the release's ``ffmpeg -i video.mp4 out.mp3``). A video without an audio
track gets a silent mono 44.1 kHz mp3 of the video's duration and is listed as "silent" in
the summary. Videos are done in parallel (``--workers``, default: number of cores).

Safe to re-run: each mp3 is written as ``.<id>.mp3.partial`` and renamed when ffmpeg
succeeded, so an existing ``<id>.mp3`` is finished and skipped; leftover partials are
removed and redone. An unreadable video is reported and skipped; the run then exits with
status 1 and lists the failures.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets.media import extract_audio  # noqa: E402
from tools.jobs import Result, print_summary, raw_videos_cli, run_parallel  # noqa: E402


def audio_job(key: str, video, mp3_path, ffmpeg=None) -> Result:
    """Write one mp3 unless it exists. Status: done | silent (no audio track) | skipped."""
    mp3_path = Path(mp3_path)
    if mp3_path.is_file() and mp3_path.stat().st_size > 0:
        return Result(key, "skipped")
    had_sound = extract_audio(video, mp3_path, ffmpeg=ffmpeg, overwrite=mp3_path.exists())
    return Result(key, "done" if had_sound else "silent")


def main(argv=None) -> int:
    args, ffmpeg, jobs = raw_videos_cli(
        "Extract an mp3 of every video in SRC/<Class>/ into DST/<Class>/<video_id>.mp3 "
        "(silent mp3 for videos without sound).",
        "mp3 folder, e.g. ROOT/VideoEmotion8--mp3", argv, suffix=".mp3")
    jobs = [(key, video, out, ffmpeg) for key, video, out in jobs]
    results = run_parallel(audio_job, jobs, args.workers, "mp3", not args.no_progress)
    failed = print_summary(f"video2mp3 {args.src} -> {args.dst}", results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
