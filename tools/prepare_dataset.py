"""Prepare a dataset in one command: raw videos -> frames + n_frames + mp3 + annotation json.

Usage (from the repository root)::

    python tools/prepare_dataset.py --src RAW --dst ROOT --dataset ve8
    python tools/prepare_dataset.py --src RAW --dst ROOT --dataset ek6 --workers 8
    python tools/make_demo_dataset.py --dst demo/raw && \\
        python tools/prepare_dataset.py --src demo/raw --dst demo/data --split_dir demo/raw/splits
    python tools/prepare_dataset.py --dataset custom --src MY_RAW --dst MY_ROOT \\
        --positive_classes happy,calm --test_fraction 0.25 --seed 1
    python tools/prepare_dataset.py --check --dst ROOT --dataset ve8    # find damaged files

Input: ``RAW/<Class>/<video_id>.mp4`` (also .avi .mkv .webm .mov ...; a class folder may
differ from the list's class name in case only) and the split lists of ``--split_dir``
(default ``tools/annotations/<dataset>/``: classInd.txt, trainlist01.txt, testlist01.txt).
Output (``ek6``: ``Ekman6--imgs``, ``Ekman6--mp3``, ``ek6_01.json``)::

    ROOT/VideoEmotion8--imgs/<Class>/<video_id>/000001.jpg ... + n_frames
    ROOT/VideoEmotion8--mp3/<Class>/<video_id>.mp3
    ROOT/ve8_01.json

Only the videos named in the lists are processed. Listed videos without a file are
warned about and listed (all of them in ``ROOT/<dataset>_missing_videos.txt``); they stay
in the json, as in the release, and the data loader leaves out videos without frames.
With ``--strict`` missing videos make the run fail. Frames and mp3 files are made in
parallel (``--workers``, default: number of cores). Safe to re-run and to interrupt:
finished videos are skipped, interrupted ones redone (see video2jpg.py / video2mp3.py).
A video ffmpeg cannot read is reported and skipped; the json is still written, and the
run exits with status 1 and lists the failures. Every frame and mp3 extracted is decoded
once to check it (an output that does not decode is removed and its video reported).

``--dataset custom`` takes any classes: the sub-folders of RAW that hold videos (or the
classes of ``--split_dir``'s classInd.txt). Without ``--split_dir`` the split is made
with a seed (``--test_fraction`` of every class's videos, default 1/3, ``--seed``) and
written as ``ROOT/splits/{classInd,trainlist01,testlist01}.txt`` for reuse
(``--split_dir ROOT/splits``). ``--positive_classes A,B,...`` records the polarity in
the json (which the PCCE loss needs). Output: ``ROOT/custom--imgs``, ``ROOT/custom--mp3``,
``ROOT/custom_01.json``. Too few videos in a class, a video name in two classes, an
unknown positive class or lists of another split already in ROOT/splits stop the run
before anything is extracted (status 2). Details: tools/custom_dataset.py.

``--check`` checks an already prepared ROOT instead (``tools/check_dataset.py``): every frame
and mp3 decoded, each damaged file listed with the command that re-extracts its video.
"""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets.catalog import DATASETS  # noqa: E402
from datasets.media import remove_partials  # noqa: E402
from tools import check_dataset  # noqa: E402
from tools.custom_dataset import (DEFAULT_SEED, DEFAULT_TEST_FRACTION,  # noqa: E402
                                  CustomDatasetError, plan_custom)
from tools.jobs import (add_common_args, print_list, print_summary, resolve_ffmpeg_arg,  # noqa: E402
                        run_parallel, tool_parser)
from tools.ve8_json import (add_split_options, check_against_raw, describe,  # noqa: E402
                            read_splits_of, resolve_class_dir, write_json)
from tools.video2jpg import frames_job, short_videos  # noqa: E402
from tools.video2mp3 import audio_job  # noqa: E402


def _warn_list(title, items):
    print(f"WARNING: {title}: {len(items)}", file=sys.stderr)
    print_list(items, sys.stderr)
    sys.stderr.flush()


def make_parser():
    """The command line of prepare_dataset.py (and of its --check)."""
    parser = tool_parser("Raw videos (RAW/<Class>/<id>.mp4) -> frames, n_frames, mp3 and annotation "
                         "json under ROOT, for the videos of the split lists.")
    parser.add_argument("--src", default=None,
                        help="raw dataset folder: RAW/<Class>/<video_id>.mp4 (required unless --check)")
    parser.add_argument("--dst", required=True, help="dataset root to write (ROOT)")
    parser.add_argument("--check", action="store_true",
                        help="check the prepared dataset ROOT instead: decode every frame and mp3, "
                             "list each damaged file with the command that re-extracts its video "
                             "(tools/check_dataset.py)")
    add_split_options(parser)
    parser.add_argument("--no_audio", action="store_true", help="skip the mp3 step")
    parser.add_argument("--strict", action="store_true", help="fail (exit 1) when listed videos are missing")
    custom = parser.add_argument_group("--dataset custom (your own classes)")
    custom.add_argument("--test_fraction", type=float, default=None,
                        help=f"share of every class's videos in the made test split "
                             f"(default {DEFAULT_TEST_FRACTION:.3g}); not with --split_dir")
    custom.add_argument("--seed", type=int, default=None,
                        help=f"seed of the made split (default {DEFAULT_SEED})")
    custom.add_argument("--positive_classes", default=None, metavar="A,B,...",
                        help="the positive classes, comma-separated (the polarity, which the "
                             "PCCE loss needs; default: unknown)")
    add_common_args(parser)
    return parser


def main(argv=None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.check:
        return check_dataset.run(args)
    if not args.src:
        parser.error("--src is required (except with --check)")
    ffmpeg = resolve_ffmpeg_arg(parser, args.ffmpeg)
    src, root = Path(args.src), Path(args.dst)
    if not src.is_dir():
        parser.error(f"no such folder: {src}")
    return prepare(parser, args, src, root, ffmpeg)


def prepare(parser, args, src, root, ffmpeg) -> int:
    """Lists, frames, mp3 and json (steps 1 to 4) for the checked command line, then
    the summary; returns the exit status."""
    facts = DATASETS[args.dataset]
    imgs, mp3s = root / facts.frames_folder, root / facts.audio_folder
    json_path = root / facts.annotation_file(args.split)
    start = time.time()

    # 1. lists, checked against the raw folder
    if args.dataset == "custom":
        plan = custom_plan(parser, args, src, root)
        if plan is None:
            return 2
        splits, found, missing, unlisted, positive = (plan.splits, plan.found, plan.missing,
                                                      plan.unlisted, plan.positive)
    else:
        splits = release_splits(parser, args, facts.title)
        if splits is None:
            return 1
        (found, missing, unlisted), positive = check_against_raw(splits, src), None
    missing_file = report_missing(args.dataset, splits, src, root, missing, unlisted)
    print(f"{len(found)} of {len(splits.entries)} listed videos found in {src}")

    # 2. frames + n_frames, 3. mp3
    frames, audio = extract(args, splits.labels, found, imgs, mp3s, ffmpeg)

    # 4. json
    ann = splits.annotation(positive)
    changed = write_json(ann, json_path)

    print(f"\nprepare_dataset ({args.dataset}) {src} -> {root} in {time.time() - start:.1f}s")
    failed = print_summary(f"frames -> {imgs}", frames,
                           {"fewer than 16 frames (n_frames 0, left out of the dataset)": short_videos(frames)})
    if not args.no_audio:
        failed += print_summary(f"mp3 -> {mp3s}", audio)
    print(f"json -> {json_path}: {describe(ann)} ({'written' if changed else 'unchanged'})")
    if args.dataset == "custom":
        print(polarity_line(ann))
    if missing:
        print(f"MISSING: {len(missing)} listed videos have no file (see {missing_file})")
    if failed:
        bad = sorted({r.key for r in frames + audio if r.status == "failed"})
        print(f"FAILED: {len(bad)} videos could not be processed: " + ", ".join(bad[:20])
              + (" ..." if len(bad) > 20 else ""))
    return 1 if failed or (args.strict and missing) else 0


def release_splits(parser, args, title):
    """The split lists of a dataset that ships them (ve8, ek6), warnings printed; None
    (after saying why) when they cannot be used."""
    given = [f for f, v in (("--test_fraction", args.test_fraction), ("--seed", args.seed),
                            ("--positive_classes", args.positive_classes)) if v is not None]
    if given:
        parser.error(f"{', '.join(given)}: only for --dataset custom ({title} has its "
                     f"own split lists and polarity)")
    return read_splits_of(args)


def report_missing(dataset, splits, src, root, missing, unlisted):
    """The path of ROOT/<dataset>_missing_videos.txt, written when listed videos are
    missing (and warned about), removed when none are."""
    missing_file = root / f"{dataset}_missing_videos.txt"
    if missing:
        root.mkdir(parents=True, exist_ok=True)
        missing_file.write_text("".join(m + "\n" for m in missing), encoding="utf-8")
        absent = [c for c in splits.labels if not resolve_class_dir(src, c).is_dir()]
        if absent:
            _warn_list(f"class folders missing in {src}", absent)
        _warn_list(f"listed videos with no video file in {src} (full list in {missing_file})", missing)
    elif missing_file.exists():
        missing_file.unlink()
    if unlisted:
        print(f"note: {len(unlisted)} videos in {src} are in no list and are ignored", file=sys.stderr)
    return missing_file


def extract(args, labels, found, imgs, mp3s, ffmpeg):
    """``(frames, audio)``: the results of the frame jobs and of the mp3 jobs (none with
    --no_audio) of the ``found`` videos."""
    # class folders named as in the lists; partials of an interrupted run go first
    for cls in labels:
        remove_partials(imgs / cls)
        if not args.no_audio:
            remove_partials(mp3s / cls)
    keys = sorted(found)
    frame_jobs = [(f"{c}/{v}", found[(c, v)], imgs / c / v, ffmpeg) for c, v in keys]
    frames = run_parallel(frames_job, frame_jobs, args.workers, "frames", not args.no_progress)
    audio = []
    if not args.no_audio:
        audio_jobs = [(f"{c}/{v}", found[(c, v)], mp3s / c / f"{v}.mp3", ffmpeg) for c, v in keys]
        audio = run_parallel(audio_job, audio_jobs, args.workers, "mp3", not args.no_progress)
    return frames, audio


def polarity_line(ann):
    """The summary line of a custom dataset's classes and positive classes."""
    return (f"classes: {', '.join(ann['labels'])}; positive: "
            + (", ".join(ann["positive_classes"]) if ann["positive_classes"] is not None
               else "unknown (train with --loss_func ce, or prepare again with --positive_classes)"))


def custom_plan(parser, args, src, root):
    """The custom dataset's plan, its made split written out; None (after saying why) when
    the raw folder or the options cannot make one."""
    if args.split_dir is not None and (args.test_fraction is not None or args.seed is not None):
        parser.error("--test_fraction and --seed make a split; --split_dir gives one")
    fraction = DEFAULT_TEST_FRACTION if args.test_fraction is None else args.test_fraction
    if not 0 < fraction < 1:
        parser.error(f"--test_fraction must lie between 0 and 1, not {fraction}")
    try:
        plan = plan_custom(src, root, args.split_dir, fraction,
                           DEFAULT_SEED if args.seed is None else args.seed,
                           args.positive_classes, args.split)
    except CustomDatasetError as e:
        print(f"prepare_dataset.py: error: {e}\n(nothing was written)", file=sys.stderr)
        return None
    for note in plan.notes:
        print(f"note: {note}", file=sys.stderr)
    for w in plan.splits.warnings:
        print(f"warning: {w}", file=sys.stderr)
    if plan.made:
        folder = plan.write_lists()
        n = {s: sum(e.subset == s for e in plan.splits.entries) for s in ("training", "validation")}
        print(f"split: {n['training']} training + {n['validation']} test videos in "
              f"{len(plan.splits.labels)} classes, stratified, seed "
              f"{DEFAULT_SEED if args.seed is None else args.seed}, test fraction {fraction:.3g}; "
              f"lists in {folder} (reuse them with --split_dir {folder})")
    return plan


if __name__ == "__main__":
    from core import entry
    sys.exit(entry.run(main))
