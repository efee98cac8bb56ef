"""What the dataset tools share as command-line jobs: parallel runs over raw videos,
their options, and the summary they print.

    args, ffmpeg, jobs = raw_videos_cli("...", "frames folder", argv)
    results = run_parallel(job, jobs, args.workers, "frames", not args.no_progress)
    failed = print_summary("video2jpg ...", results)

A raw dataset is ``SRC/<Class>/<video_id>.<ext>``; every job is one video, run in a thread
pool (each job mostly waits on ffmpeg), and a job that fails becomes a ``failed`` Result
while the others carry on. The ffmpeg work itself is ``datasets.media``.
"""
import argparse
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence

from core.entry import usable_cpus
from datasets.media import (MediaError, add_ffmpeg_option, find_ffmpeg, find_videos,
                            remove_partials)


def class_dirs(src, only: Optional[Iterable[str]] = None) -> List[Path]:
    """Class folders of a raw dataset: sub-folders of ``src`` holding videos (or ``only``)."""
    src = Path(src)
    if only:
        return [src / name for name in only]
    return [p for p in sorted(src.iterdir())
            if p.is_dir() and not p.name.startswith(".") and find_videos(p)]


def raw_jobs(src, dst, classes: Optional[Iterable[str]] = None, suffix: str = "",
             clean: bool = True) -> List[tuple]:
    """``[(key "Class/id", video path, dst/Class/<id><suffix>)]`` for every raw video in ``src``.

    With ``clean``, leftover partial outputs in the ``dst`` class folders are removed.
    """
    jobs = []
    for cdir in class_dirs(src, classes):
        if classes and not cdir.is_dir():
            raise MediaError(f"no class folder {cdir}")
        out_dir = Path(dst) / cdir.name
        if clean:
            remove_partials(out_dir)
        for vid, video in find_videos(cdir).items():
            jobs.append((f"{cdir.name}/{vid}", video, out_dir / f"{vid}{suffix}"))
    return jobs


# --------------------------------------------------------------------------- running many jobs
@dataclass
class Result:
    """Outcome of one job: ``status`` is done | skipped | redone | silent | failed."""
    key: str
    status: str
    message: str = ""
    value: object = None


def tool_parser(description: str) -> argparse.ArgumentParser:
    """The argument parser of a tool: its help shows every default."""
    return argparse.ArgumentParser(description=description,
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)


def add_common_args(parser, ffmpeg: bool = True) -> None:
    """``--workers``, ``--no_progress`` and (if ``ffmpeg``) ``--ffmpeg`` options of the scripts."""
    parser.add_argument("--workers", type=int, default=usable_cpus(),
                        help="parallel jobs (default: number of cores, %(default)s here)")
    if ffmpeg:
        add_ffmpeg_option(parser)
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")


def resolve_ffmpeg_arg(parser, path: Optional[str]) -> str:
    """``find_ffmpeg(path)``, or a clean argparse error (exit 2) when there is none."""
    try:
        return find_ffmpeg(path)
    except MediaError as e:
        parser.error(str(e))


def run_parallel(fn: Callable[..., Result], jobs: Sequence[tuple], workers: int, desc: str,
                 progress: bool = True) -> List[Result]:
    """Run ``fn(*job)`` for every job in a thread pool (each job mostly waits on ffmpeg).

    An exception in a job becomes a ``failed`` Result; the other jobs carry on.
    """
    from tqdm import tqdm

    results: List[Result] = []
    workers = max(1, int(workers or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(fn, *job): job for job in jobs}
        tty = sys.stderr.isatty()
        bar = tqdm(total=len(futures), desc=desc, unit="video", disable=not progress,
                   dynamic_ncols=True, file=sys.stderr, mininterval=0.2 if tty else 10)
        try:
            for fut in as_completed(futures):
                try:
                    results.append(fut.result())
                except Exception as e:  # noqa: BLE001 - report and go on
                    job = futures[fut]
                    results.append(Result(str(job[0]), "failed", f"{type(e).__name__}: {e}"))
                bar.update(1)
        except KeyboardInterrupt:
            for fut in futures:
                fut.cancel()
            raise
        finally:
            bar.close()
    return results


def print_list(items: Sequence[str], file=None, limit: int = 50, indent: str = "    ") -> None:
    """One line per item, the first ``limit`` of them, then "... and N more"."""
    file = file or sys.stdout
    for item in items[:limit]:
        print(f"{indent}{item}", file=file)
    if len(items) > limit:
        print(f"{indent}... and {len(items) - limit} more", file=file)


def print_summary(title: str, results: Sequence[Result], extra: Optional[Dict[str, List[str]]] = None,
                  file=None, max_list: int = 50) -> int:
    """Print counts per status and the failed / silent videos; return the failure count."""
    file = file or sys.stdout
    counts: Dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    order = ["done", "redone", "silent", "skipped", "failed"]
    parts = [f"{counts[s]} {s}" for s in order if counts.get(s)]
    parts += [f"{n} {s}" for s, n in counts.items() if s not in order]
    print(f"{title}: {len(results)} videos: " + (", ".join(parts) or "nothing to do"), file=file)
    groups = {
        "silent (no audio track, wrote a silent mp3)": [r for r in results if r.status == "silent"],
        "FAILED": [r for r in results if r.status == "failed"],
    }
    for name, rs in groups.items():
        if rs:
            print(f"  {name}: {len(rs)}", file=file)
            print_list([r.key + (f"  -- {r.message}" if r.message else "")
                        for r in sorted(rs, key=lambda r: r.key)], file, max_list)
    for name, items in (extra or {}).items():
        if items:
            print(f"  {name}: {len(items)}", file=file)
            print_list(items, file, max_list)
    file.flush()
    return counts.get("failed", 0)


def raw_videos_cli(description: str, dst_help: str, argv=None, suffix: str = "",
                   extra_args: Callable = None):
    """The command line of a tool that maps ``SRC/<Class>/<id>.<ext>`` to
    ``DST/<Class>/<id><suffix>``: parses ``src dst [--class NAME]... [--workers]
    [--ffmpeg] [--no_progress]`` (plus what ``extra_args(parser)`` adds) and returns
    ``(args, ffmpeg, jobs)`` with ``jobs`` as ``raw_jobs`` lists them. Usage errors exit
    with status 2."""
    parser = tool_parser(description)
    parser.add_argument("src", help="raw dataset folder: SRC/<Class>/<video_id>.mp4")
    parser.add_argument("dst", help=dst_help)
    parser.add_argument("--class", dest="classes", action="append", metavar="NAME",
                        help="only this class folder (repeatable; default: every class)")
    if extra_args is not None:
        extra_args(parser)
    add_common_args(parser)
    args = parser.parse_args(argv)
    ffmpeg = resolve_ffmpeg_arg(parser, args.ffmpeg)
    if not Path(args.src).is_dir():
        parser.error(f"no such folder: {args.src}")
    try:
        jobs = raw_jobs(args.src, args.dst, args.classes, suffix=suffix)
    except MediaError as e:
        parser.error(str(e))
    return args, ffmpeg, jobs
