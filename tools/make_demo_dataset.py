"""Make a small synthetic raw dataset in the VE-8 layout (videos with picture AND sound).

Usage (from the repository root)::

    python tools/make_demo_dataset.py --dst demo/raw
    python tools/make_demo_dataset.py --dst demo/raw --per_class_train 6 --per_class_test 3 --seconds 3 --seed 0
    python tools/prepare_dataset.py --src demo/raw --dst demo/data --split_dir demo/raw/splits
    python tools/make_demo_dataset.py --dst demo/custom_raw --classes calm,cheerful,tense --no_lists

Output::

    RAW/<Class>/<video_id>.mp4      8 VE-8 classes, 320x240, 30 fps, H.264 + AAC (44.1 kHz mono)
    RAW/splits/classInd.txt         "1 Anger" ... "8 Trust"
    RAW/splits/trainlist01.txt      "<Class>/<video_id> <index>"
    RAW/splits/testlist01.txt       "<Class>/<video_id>"

The class shows in the picture and in the sound: the background has a class hue
(45 degrees apart) and a grid whose cell size grows with the class index, with a moving
box, per-video jitter of hue, brightness, grid offset and motion, and temporal noise; the
sound is a sine tone at a class pitch (220 Hz times 2^(class/2), half an octave apart)
with a class tremolo rate, per-video pitch jitter of +-2 % and pink noise. A tiny model
separates the classes in a few epochs. Each class's first training and first test video
has an id with a space, a comma, a dot and an apostrophe (e.g. "Joy's demo, train no.00")
to exercise file naming.

``--classes A,B,...`` names the classes otherwise (at most 8; their looks and sounds are
spread over the 8 synthetic ones: with 3 names, those of classes 0, 2 and 5), for a
dataset of your own classes (``prepare_dataset.py --dataset custom``). ``--no_lists``
writes no split lists and makes ``--per_class_train`` + ``--per_class_test`` videos per
class named ``<class>-clip-NN`` (the first with an odd name, as above), for a dataset
whose split is made when it is prepared.

Deterministic: the same --seed gives the same parameters and (bit-exact encoding) the
same files. Generation runs in parallel (--workers). Safe to re-run: existing videos are
kept (written as .<name>.partial and renamed when ffmpeg succeeded); --overwrite remakes them.
"""
import colorsys
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ffmpeg as ffmpeg_python  # noqa: E402

from core.atomic_file import write_text_if_changed  # noqa: E402
from datasets.catalog import DATASETS  # noqa: E402
from datasets.media import ffmpeg_to_file, remove_partials  # noqa: E402
from tools.jobs import (Result, add_common_args, print_summary, resolve_ffmpeg_arg,  # noqa: E402
                        run_parallel, tool_parser)

VE8_CLASSES = DATASETS["ve8"].classes.names
WIDTH, HEIGHT, FPS, SAMPLE_RATE = 320, 240, 30, 44100


def video_id(cls: str, split: str, i: int) -> str:
    if i == 0:
        return f"{cls}'s demo, {split} no.{i:02d}"
    return f"{cls.lower()}-{split}-{i:02d}"


def video_params(seed: int, c: int, split: str, i: int) -> dict:
    """Per-video parameters of synthetic class ``c`` (0..7), drawn from an rng seeded by
    (seed, class, split, index)."""
    rng = random.Random(f"{seed}/{c}/{split}/{i}")
    hue = (c / len(VE8_CLASSES) + rng.uniform(-0.03, 0.03)) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, rng.uniform(0.65, 0.9), rng.uniform(0.6, 0.85))
    box_hue = (hue + 0.5) % 1.0
    br, bg_, bb = colorsys.hsv_to_rgb(box_hue, 0.6, rng.uniform(0.8, 1.0))
    return {
        "color": "0x%02X%02X%02X" % (int(r * 255), int(g * 255), int(b * 255)),
        "box_color": "0x%02X%02X%02X" % (int(br * 255), int(bg_ * 255), int(bb * 255)),
        "cell": 12 + 8 * c,
        "thick": 1 + c % 3,
        "grid_x": rng.randrange(0, 40), "grid_y": rng.randrange(0, 40),
        "box": rng.randrange(30, 60),
        "speed_x": round(rng.uniform(1.0, 3.0), 3), "speed_y": round(rng.uniform(0.7, 2.0), 3),
        "phase": round(rng.uniform(0, 6.28), 3),
        "noise": rng.randrange(8, 20), "noise_seed": rng.randrange(1, 2 ** 31 - 1),
        "freq": round(220.0 * 2 ** (c / 2) * rng.uniform(0.98, 1.02), 2),
        "tremolo": round(2.0 + c, 2),
        "volume": round(rng.uniform(0.5, 0.9), 3),
        "hiss": round(rng.uniform(0.02, 0.06), 4), "hiss_seed": rng.randrange(1, 2 ** 31 - 1),
    }


def make_video(path, p: dict, seconds: float, ffmpeg=None) -> None:
    """Render one video with sound (atomically: ``.<name>.partial`` then rename)."""
    d = f"{seconds:.3f}"
    lavfi = dict(f="lavfi")
    bg = ffmpeg_python.input(f"color=c={p['color']}:s={WIDTH}x{HEIGHT}:r={FPS}:d={d}", **lavfi)
    bg = bg.filter("drawgrid", x=p["grid_x"], y=p["grid_y"], w=p["cell"], h=p["cell"],
                   t=p["thick"], c="white@0.6")
    box = ffmpeg_python.input(f"color=c={p['box_color']}:s={p['box']}x{p['box']}:r={FPS}:d={d}", **lavfi)
    # no commas in the expressions (they would split the filter graph)
    x = f"(main_w-overlay_w)*(0.5+0.5*sin({p['speed_x']}*t+{p['phase']}))"
    y = f"(main_h-overlay_h)*(0.5+0.5*cos({p['speed_y']}*t))"
    video = ffmpeg_python.overlay(bg, box, x=x, y=y, shortest=1)
    video = video.filter("noise", alls=p["noise"], allf="t+u", all_seed=p["noise_seed"])
    video = video.filter("format", "yuv420p")
    tone = ffmpeg_python.input(f"sine=frequency={p['freq']}:sample_rate={SAMPLE_RATE}:duration={d}", **lavfi)
    tone = tone.filter("tremolo", f=p["tremolo"], d=0.5).filter("volume", p["volume"])
    hiss = ffmpeg_python.input(f"anoisesrc=color=pink:amplitude={p['hiss']}:sample_rate={SAMPLE_RATE}"
                               f":duration={d}:seed={p['hiss_seed']}", **lavfi)
    audio = ffmpeg_python.filter([tone, hiss], "amix", inputs=2, duration="shortest", normalize=0)
    ffmpeg_to_file(path, lambda url: ffmpeg_python.output(
        video, audio, url, f="mp4", t=d, r=FPS, vcodec="libx264", preset="veryfast",
        crf=20, pix_fmt="yuv420p", acodec="aac", ac=1, ar=SAMPLE_RATE, **{"b:a": "96k"},
        threads=1, fflags="+bitexact", **{"flags:v": "+bitexact", "flags:a": "+bitexact"},
        map_metadata=-1), ffmpeg)


def video_job(key, path, params, seconds, ffmpeg, overwrite) -> Result:
    path = Path(path)
    if path.is_file() and path.stat().st_size > 0 and not overwrite:
        return Result(key, "skipped")
    make_video(path, params, seconds, ffmpeg)
    return Result(key, "done")


def make_parser():
    """The command line of make_demo_dataset.py."""
    parser = tool_parser("Make a synthetic VE-8-layout raw dataset (RAW/<Class>/<id>.mp4 with sound) "
                         "and its split lists in RAW/splits/.")
    parser.add_argument("--dst", required=True, help="raw dataset folder to write (RAW)")
    parser.add_argument("--per_class_train", type=int, default=6, help="training videos per class")
    parser.add_argument("--per_class_test", type=int, default=3, help="test videos per class")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of every video")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split_dir", default=None, help="where to write the lists (default: RAW/splits)")
    parser.add_argument("--classes", default=None, metavar="A,B,...",
                        help="class names (2 to 8; default: VE-8's), each with the looks of one "
                             "of the 8 synthetic classes")
    parser.add_argument("--no_lists", action="store_true",
                        help="write no split lists; videos are named <class>-clip-NN")
    parser.add_argument("--overwrite", action="store_true", help="remake videos that exist")
    add_common_args(parser)
    return parser


def main(argv=None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.per_class_train < 1 or args.per_class_test < 0 or args.seconds <= 0:
        parser.error("need --per_class_train >= 1, --per_class_test >= 0 and --seconds > 0")
    ffmpeg = resolve_ffmpeg_arg(parser, args.ffmpeg)
    raw = Path(args.dst)
    split_dir = Path(args.split_dir) if args.split_dir else raw / "splits"
    classes = list(VE8_CLASSES)
    if args.classes is not None:
        classes = [c.strip() for c in args.classes.split(",") if c.strip()]
        if not 2 <= len(classes) <= len(VE8_CLASSES) or len(set(classes)) != len(classes):
            parser.error(f"--classes takes 2 to {len(VE8_CLASSES)} different names")

    jobs, train_lines, test_lines = plan_videos(args, classes, raw, ffmpeg)
    results = run_parallel(video_job, jobs, args.workers, "demo videos", not args.no_progress)

    failed = print_summary(f"demo dataset {raw}", results)
    if args.no_lists:
        print(f"{len(classes)} classes x {args.per_class_train + args.per_class_test} videos of "
              f"{args.seconds:g} s")
        print(f"next: python tools/prepare_dataset.py --dataset custom --src {raw} --dst DATA_ROOT")
        return 1 if failed else 0
    write_lists(split_dir, classes, train_lines, test_lines)
    print(f"{len(classes)} classes x ({args.per_class_train} train + {args.per_class_test} test) "
          f"videos of {args.seconds:g} s; split lists in {split_dir}")
    print(f"next: python tools/prepare_dataset.py --src {raw} --dst DATA_ROOT --split_dir {split_dir}")
    return 1 if failed else 0


def plan_videos(args, classes, raw, ffmpeg):
    """``(jobs, train_lines, test_lines)``: the ``video_job`` arguments of every video and
    its line in the split lists; makes the class folders, without their partials."""
    groups = ((("clip", args.per_class_train + args.per_class_test),) if args.no_lists else
              (("train", args.per_class_train), ("test", args.per_class_test)))
    jobs, train_lines, test_lines = [], [], []
    for c, cls in enumerate(classes):
        style = c * len(VE8_CLASSES) // len(classes)  # the synthetic class it looks like
        (raw / cls).mkdir(parents=True, exist_ok=True)
        remove_partials(raw / cls)
        for split, n in groups:
            for i in range(n):
                vid = video_id(cls, split, i)
                params = video_params(args.seed, style, split, i)
                jobs.append((f"{cls}/{vid}", raw / cls / f"{vid}.mp4", params, args.seconds,
                             ffmpeg, args.overwrite))
                (train_lines if split == "train" else test_lines).append(
                    f"{cls}/{vid} {c + 1}" if split == "train" else f"{cls}/{vid}")
    return jobs, train_lines, test_lines


def write_lists(split_dir, classes, train_lines, test_lines) -> None:
    """Write classInd.txt, trainlist01.txt and testlist01.txt into ``split_dir`` (unchanged
    files are left alone)."""
    split_dir.mkdir(parents=True, exist_ok=True)
    write_text_if_changed(split_dir / "classInd.txt", "".join(f"{i + 1} {c}\n" for i, c in enumerate(classes)))
    write_text_if_changed(split_dir / "trainlist01.txt", "".join(l + "\n" for l in train_lines))
    write_text_if_changed(split_dir / "testlist01.txt", "".join(l + "\n" for l in test_lines))


if __name__ == "__main__":
    sys.exit(main())
