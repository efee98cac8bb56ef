"""Training-loader throughput: this port against "the release's way", values unchanged.

Run (from the repository root)::

    .venv/bin/python benchmarks/bench_data.py                     # VE-8-like: 8 videos of 107 s
    .venv/bin/python benchmarks/bench_data.py --workers 0 --pairs 40 --json loader_0w.json
    .venv/bin/python benchmarks/bench_data.py --seconds 30 --videos 4 --workers 2 --batch_size 2

Synthetic videos of VE-8's average length (107 s at 30 fps, 320x240 frames after
extraction) are made once with ffmpeg (``testsrc2`` plus temporal noise, a sine
soundtrack), extracted the way the release does (``-vf scale=-1:240 %06d.jpg`` and
``video.mp4 -> .mp3``), and kept under ``benchmarks/out/`` (gitignored).

Both loaders are Jittor Datasets with the same batch size and number of workers, over
the same training items at the default config (12 snippets x 16 frames x 112x112 plus
[4096, 32] audio), and the same per-item randomness:

- release's way: every item decodes the mp3 and computes the MFCC, opens every frame of
  every snippet with PIL (``Image.open(f).convert('RGB')``, repeated indices decoded
  again), transforms it, converts it to float32 CHW (ToTensor without the division) and
  stacks float32 tensors;
- this port (``datasets.ve8.VE8Dataset``): MFCC from the on-disk cache, each distinct
  frame decoded once (``datasets/jpeg.py``: Pillow's libjpeg, called directly) and resized
  by ``transforms/resample.py``'s kernel straight into the uint8 sample.

Before timing, the script asserts that both ways give the same values (visual and audio)
on a few items, in evaluation mode and in training mode.

Timing: each loader lives in its own process (``benchmarks/lockstep.py``), with its own
Jittor worker processes when ``--workers`` > 0, so that neither inherits the other's
state. One call is one full pass over ``--items`` training items (the videos in turn,
each item with its own random crops). A first pass each is untimed in the comparison
(worker start-up; the port's MFCC cache starts empty, so its first pass shows the cold
cache); then ``--pairs`` rounds of one pass each, in alternating order, so that a busy
machine's drift falls on both. After each pass the loader's workers are stopped, untimed:
Jittor's workers otherwise start on the next pass's batches as soon as one is idle, and
would work while the other loader is timed. Per pair, the ratio of samples/s (port / release); the
table gives its median, quartiles and range, the same for the CPU time per sample (the
loader process and its live Jittor workers, from /proc), and the 1-minute load average.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.lockstep import Worker, fmt_spread, interleave, load_average, serve, spread  # noqa: E402
from core.jittor_setup import jt  # noqa: E402,F401
from jittor.dataset import Dataset  # noqa: E402
from PIL import Image  # noqa: E402

from datasets.audio import mfcc_features  # noqa: E402
from datasets.catalog import DATASETS  # noqa: E402
from datasets.media import find_ffmpeg, write_n_frames  # noqa: E402
from datasets.ve8 import VE8Dataset, item_rng  # noqa: E402
from transforms.temporal import TSN  # noqa: E402
from transforms.spatial import TrainSpatialTransform, EvalSpatialTransform  # noqa: E402

VE8 = DATASETS["ve8"]
CLASSES = VE8.classes.names


def make_data(out, n_videos, seconds):
    """Prepared VE-8 layout with ``n_videos`` synthetic videos of ``seconds`` s (cached)."""
    root = os.path.join(out, f"ve8_{n_videos}x{seconds:g}s")
    done = os.path.join(root, ".complete")
    if os.path.exists(done):
        return root
    ff = find_ffmpeg()
    db = {}
    for k in range(n_videos):
        cls, vid = CLASSES[k % 8], f"bench_{k:03d}"
        mp4 = os.path.join(out, "mp4", f"{vid}_{seconds:g}s.mp4")
        os.makedirs(os.path.dirname(mp4), exist_ok=True)
        if not os.path.exists(mp4):
            subprocess.run([ff, "-v", "error", "-y",
                            "-f", "lavfi", "-i", f"testsrc2=size=320x240:rate=30:duration={seconds}",
                            "-f", "lavfi", "-i", f"sine=frequency={220 + 55 * k}:duration={seconds}",
                            "-vf", f"noise=alls=12:allf=t,hue=H={k}*0.7", "-c:v", "libx264",
                            "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac",
                            "-shortest", mp4], check=True)
        fdir = os.path.join(root, VE8.frames_folder, cls, vid)
        os.makedirs(fdir, exist_ok=True)
        subprocess.run([ff, "-v", "error", "-y", "-i", mp4, "-vf", "scale=-1:240",
                        os.path.join(fdir, "%06d.jpg")], check=True)
        write_n_frames(fdir)
        adir = os.path.join(root, VE8.audio_folder, cls)
        os.makedirs(adir, exist_ok=True)
        subprocess.run([ff, "-v", "error", "-y", "-i", mp4, os.path.join(adir, vid + ".mp3")], check=True)
        db[vid] = {"subset": "training", "annotations": {"label": cls}}
    with open(os.path.join(root, VE8.annotation_file(1)), "w") as f:
        json.dump(dict(VE8.classes.to_json(), database=db), f)
    open(done, "w").close()
    return root


class ReleaseWayDataset(Dataset):
    """The release's per-item work, on the same entries and randomness as VE8Dataset."""

    def __init__(self, ours, train):
        super().__init__()
        self.data = ours.data
        self.seed, self.epoch = ours.seed, ours.epoch
        self.train = train
        self.temporal = TSN(ours.seq_len, ours.snippet_duration, center=not train)
        self.spatial = (TrainSpatialTransform(ours.sample_size) if train
                        else EvalSpatialTransform(ours.sample_size))
        self.set_attrs(total_len=len(self.data))

    @staticmethod
    def pil_loader(path):
        with open(path, "rb") as f:
            with Image.open(f) as img:
                return img.convert("RGB")

    def __getitem__(self, index):
        entry = self.data[index]
        rng = item_rng(self.seed, self.epoch, index) if self.train else None
        audio = mfcc_features(entry["audio"])  # decode + MFCC every time
        snippets_idx = self.temporal(entry["frame_indices"], rng)
        snippets = [[self.pil_loader(os.path.join(entry["video_dir"], f"{i:06d}.jpg")) for i in s]
                    for s in snippets_idx]
        params = self.spatial.draw(rng)  # randomize_parameters() once per video
        out = []
        for snippet in snippets:
            frames = [np.asarray(self.spatial.apply_pil(img, params)).transpose(2, 0, 1)
                      .astype(np.float32) for img in snippet]  # ToTensor, no division
            out.append(np.stack(frames, 0).transpose(1, 0, 2, 3))  # [3, T, H, W]
        return np.stack(out, 0), entry["target"], audio, entry["video_id"]


def cpu_seconds(ds):
    """CPU time of this process and of the Jittor worker processes of ``ds`` that are alive
    (/proc; workers that have not started yet count 0)."""
    total = time.process_time()
    tick = os.sysconf("SC_CLK_TCK")
    for w in getattr(ds, "workers", []):
        try:
            with open(f"/proc/{w.p.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime + stime
        except (OSError, ValueError, IndexError):
            pass
    return total


def time_pass(ds):
    """``{samples, wall, cpu}`` of one full pass, batches synced as Jittor Vars."""
    c0, t0 = cpu_seconds(ds), time.perf_counter()
    n = 0
    for batch in ds:
        batch[0].sync()  # data are in Jittor Vars as a model would get them
        n += batch[0].shape[0]
    wall, cpu = time.perf_counter() - t0, cpu_seconds(ds) - c0
    if getattr(ds, "workers", None):
        # Jittor's workers start on the next pass's batches as soon as one of them goes
        # idle; left running, they would work (and fill their buffers) while the other
        # loader is being timed. Stopped here, untimed, every pass starts from idle workers.
        ds._stop_all_workers()
    return dict(samples=n, wall=wall, cpu=cpu)


def check_values(root, n_check):
    for train in (False, True):
        ours = make_ours(root, None, train=train)
        ref = ReleaseWayDataset(ours, train)
        for i in range(min(n_check, ours.n_samples)):
            a, b = ours[i], ref[i]
            assert a[0].dtype == np.uint8 and b[0].dtype == np.float32
            assert np.array_equal(a[0].astype(np.float32), b[0]), (train, i)
            assert np.array_equal(a[2], b[2]) and a[1] == b[1] and a[3] == b[3]
    print(f"values: ours == release's way on {min(n_check, ours.n_samples)} items "
          f"(eval and train mode), visual and audio")


def make_ours(root, cache, train=True, items=None):
    ds = VE8Dataset(os.path.join(root, VE8.frames_folder), os.path.join(root, VE8.audio_folder),
                    os.path.join(root, VE8.annotation_file(1)), "training", train=train,
                    audio_cache=cache, seed=1, epoch=0)
    if items is not None:  # the videos in turn; each item index draws its own crops
        ds.data = [ds.data[i % len(ds.data)] for i in range(items)]
        ds.n_samples = items
        ds.set_attrs(total_len=items)
    return ds


def serve_loader(args):
    """Worker side: one loader (``--serve release|port``) answering "pass" calls."""
    cache = os.path.join(args.out, "mfcc_cache_bench")
    if args.serve == "port":
        shutil.rmtree(cache, ignore_errors=True)  # the first pass is the cold one
    ours = make_ours(args.root, cache, items=args.items)
    ds = ReleaseWayDataset(ours, True) if args.serve == "release" else ours
    bs = args.batch_size
    per_item = ours.seq_len * 3 * ours.snippet_duration * ours.sample_size ** 2 * 4 + 4096 * 32 * 4
    ds.set_attrs(batch_size=bs, num_workers=args.workers,
                 buffer_size=max(512 << 20, 2 * bs * per_item))
    serve({"pass": lambda: time_pass(ds)})


def compare(args, root, workers):
    """The two loaders with ``workers`` Jittor workers each, interleaved pass by pass."""
    def worker(kind):
        cmd = [sys.executable, os.path.abspath(__file__), "--serve", kind, "--root", root,
               "--out", args.out, "--workers", str(workers), "--batch_size", str(args.batch_size),
               "--items", str(args.items)]
        return Worker(cmd, cwd=ROOT, label=f"{kind} loader, {workers} workers")

    with worker("release") as release, worker("port") as port:
        first = [release.call("pass"), port.call("pass")]
        load = [load_average()]
        rounds = interleave([release, port], "pass", args.pairs)
        load.append(load_average())
    return dict(workers=workers, first=first, rounds=rounds, load_average=load)


def report(result, args):
    w, rounds = result["workers"], result["rounds"]
    rate = [[r["samples"] / r["wall"] for r in pair] for pair in rounds]
    cpu = [[r["cpu"] / r["samples"] for r in pair] for pair in rounds]
    speed = spread([p / r for r, p in rate])
    cpu_ratio = spread([r / p for r, p in cpu])
    lo, hi = min(result["load_average"]), max(result["load_average"])
    print(f"\n{w} workers: {len(rounds)} interleaved pairs of passes over {args.items} items "
          f"(1-min load average {lo:.1f}-{hi:.1f})")
    print(f"{'loader':<14} {'samples/s median [range]':>26} {'CPU s/sample':>13} "
          f"{'first pass s':>13}")
    for k, name in enumerate(("release's way", "this port")):
        r = spread([pair[k] for pair in rate])
        c = spread([pair[k] for pair in cpu])
        f = result["first"][k]
        print(f"{name:<14} {r['median']:>9.2f} [{r['min']:.2f}-{r['max']:.2f}]{'':>5} "
              f"{c['median']:>13.3f} {f['wall']:>13.1f}")
    print(f"port / release, per pair: samples/s {fmt_spread(speed)}")
    print(f"                          CPU time per sample (release / port) {fmt_spread(cpu_ratio)}")
    return dict(workers=w, pairs=len(rounds), items=args.items, load_average=[lo, hi],
                speed_ratio=speed, cpu_ratio=cpu_ratio, rounds=rounds, first=result["first"])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=107, help="video length in seconds (VE-8 average 107)")
    p.add_argument("--videos", type=int, default=8, help="number of synthetic videos")
    p.add_argument("--items", type=int, default=16, help="training items per timed pass")
    p.add_argument("--workers", default="0,2", help="comma-separated worker counts to measure")
    p.add_argument("--batch_size", type=int, default=2, help="batch size of both loaders")
    p.add_argument("--pairs", type=int, default=7, help="interleaved pairs of passes")
    p.add_argument("--check", type=int, default=2, help="items checked for equal values")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "out"),
                   help="folder for the synthetic data and the MFCC cache")
    p.add_argument("--json", help="write the measurements here")
    p.add_argument("--serve", choices=("release", "port"), help=argparse.SUPPRESS)
    p.add_argument("--root", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        args.workers = int(args.workers)
        return serve_loader(args)

    t = time.perf_counter()
    root = make_data(args.out, args.videos, args.seconds)
    print(f"data: {root} ({time.perf_counter() - t:.1f} s to make or find)")
    check_values(root, args.check)
    print(f"{args.videos} videos x {args.seconds:g} s at 30 fps, 320x240 frames; items of 12 x 16 "
          f"frames x 112 x 112 + [4096, 32] audio; batch {args.batch_size}")
    results = [report(compare(args, root, int(w)), args) for w in args.workers.split(",")]
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(videos=args.videos, seconds=args.seconds, batch_size=args.batch_size,
                           results=results), f, indent=1)


if __name__ == "__main__":
    main()
