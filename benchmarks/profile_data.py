"""Where a training sample's CPU time goes in this port's loader, stage by stage.

Run (from the repository root, after ``bench_data.py`` has made its synthetic videos)::

    .venv/bin/python benchmarks/profile_data.py               # 6 rounds of 16 items
    .venv/bin/python benchmarks/profile_data.py --rounds 10

Over the same training items as ``bench_data.py`` (0 workers, batch 2, warm MFCC cache),
timers wrapped around the stages of ``datasets.sample.SampleRecipe`` and of Jittor's
batching add up each stage's CPU time (``time.process_time``: other programs on a busy
machine do not count, and no profiler slows Python down). "other" is the rest of the
sample: frame bookkeeping, file names, the copies of loop-padded frames. Rounds alternate
between the two frame decoders, ``datasets.jpeg`` and Pillow's
``Image.open(f).convert('RGB')`` (what the loader used before ``datasets.jpeg``), so the
two columns are measured under the same load.
"""
import argparse
import collections
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.bench_data import make_data, make_ours  # noqa: E402
from datasets import jpeg, sample  # noqa: E402
from transforms import spatial  # noqa: E402

STAGES = ("JPEG decode", "crop + resize", "augmentation", "MFCC cache read", "collation",
          "to Jittor", "other")


class Timers:
    """CPU seconds per stage; ``wrap(stage, fn)`` times every call of ``fn``."""

    def __init__(self):
        self.seconds = collections.Counter()

    def wrap(self, stage, fn):
        def timed(*args, **kwargs):
            t = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[stage] += time.process_time() - t
        return timed


def instrument(ds, timers, way):
    """Timers around the loader's stages; ``way["pillow"]`` switches the decoder."""
    decode_rgbx, load_frame = jpeg.decode_rgbx, sample.load_frame
    jpeg.decode_rgbx = timers.wrap(  # None: the recipe decodes with Pillow (load_frame)
        "JPEG decode", lambda path: None if way["pillow"] else decode_rgbx(path))
    sample.load_frame = timers.wrap("JPEG decode", load_frame)
    spatial.resize_crop_into = timers.wrap("crop + resize", spatial.resize_crop_into)
    ds.recipe.spatial.apply_into = timers.wrap("apply_into", ds.recipe.spatial.apply_into)
    ds.recipe.audio_features = timers.wrap("MFCC cache read", ds.recipe.audio_features)
    ds.collate_batch = timers.wrap("collation", ds.collate_batch)
    ds.to_jittor = timers.wrap("to Jittor", ds.to_jittor)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=6, help="passes, alternating the decoders")
    p.add_argument("--items", type=int, default=16)
    p.add_argument("--batch_size", type=int, default=2)
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "out"))
    args = p.parse_args(argv)
    root = make_data(args.out, 8, 107)
    ds = make_ours(root, os.path.join(args.out, "mfcc_cache_bench"), items=args.items)
    ds.set_attrs(batch_size=args.batch_size, num_workers=0)
    for _ in ds:  # warm: MFCC cache, kernels, geometries
        pass
    way = {"pillow": False}
    timers = Timers()
    instrument(ds, timers, way)
    seconds = {name: collections.Counter() for name in ("datasets.jpeg", "Pillow")}
    samples = collections.Counter()
    for r in range(args.rounds):
        name = ("datasets.jpeg", "Pillow")[r % 2]
        way["pillow"] = name == "Pillow"
        timers.seconds = seconds[name]
        t0 = time.process_time()
        for batch in ds:
            batch[0].sync()
            samples[name] += batch[0].shape[0]
        seconds[name]["total"] += time.process_time() - t0
    print(f"CPU ms per sample ({args.rounds} alternating passes over {args.items} training "
          f"items, batch {args.batch_size}, 0 workers)")
    print(f"{'stage':<18}{'Pillow decode':>16}{'datasets.jpeg':>16}")
    rows = {}
    for name, s in seconds.items():
        per = {"JPEG decode": s["JPEG decode"], "crop + resize": s["crop + resize"],
               "augmentation": s["apply_into"] - s["crop + resize"],
               "MFCC cache read": s["MFCC cache read"], "collation": s["collation"],
               "to Jittor": s["to Jittor"]}
        per["other"] = s["total"] - sum(per.values())
        per["total"] = s["total"]
        rows[name] = {k: 1e3 * v / samples[name] for k, v in per.items()}
    for stage in STAGES + ("total",):
        a, b = rows["Pillow"][stage], rows["datasets.jpeg"][stage]
        print(f"{stage:<18}{a:>9.1f} {100 * a / rows['Pillow']['total']:>4.0f}%"
              f"{b:>9.1f} {100 * b / rows['datasets.jpeg']['total']:>4.0f}%")


if __name__ == "__main__":
    main()
