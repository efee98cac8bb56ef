"""Training-loader throughput: this port against "the release's way", values unchanged.

Run (from the repository root)::

    .venv/bin/python benchmarks/bench_data.py                     # VE-8-like: 8 videos of 107 s
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
- this port (``datasets.ve8.VE8Dataset``): MFCC from the on-disk cache (run cold, with an
  empty cache, then warm), each distinct frame decoded once, uint8 until the model.

Each loader is timed over two passes (see the table's notes). Before timing, the script asserts that both ways give the same values (visual and audio)
on a few items, in evaluation mode and in training mode. It prints a table of samples/s.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from core.jittor_setup import jt  # noqa: E402,F401
from jittor.dataset import Dataset  # noqa: E402
from PIL import Image  # noqa: E402

from datasets.audio import mfcc_features  # noqa: E402
from datasets.catalog import DATASETS  # noqa: E402
from datasets.media import write_n_frames  # noqa: E402
from datasets.ve8 import VE8Dataset, item_rng  # noqa: E402
from transforms.temporal import TSN  # noqa: E402
from transforms.spatial import TrainSpatialTransform, EvalSpatialTransform  # noqa: E402

VE8 = DATASETS["ve8"]
CLASSES = VE8.classes.names


def ffmpeg_exe():
    import imageio_ffmpeg
    return imageio_ffmpeg.get_ffmpeg_exe()


def make_data(out, n_videos, seconds):
    """Prepared VE-8 layout with ``n_videos`` synthetic videos of ``seconds`` s (cached)."""
    root = os.path.join(out, f"ve8_{n_videos}x{seconds:g}s")
    done = os.path.join(root, ".complete")
    if os.path.exists(done):
        return root
    ff = ffmpeg_exe()
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


def time_pass(ds):
    """(samples, seconds) of one full pass, batches synced as Jittor Vars."""
    t0 = time.perf_counter()
    n = 0
    for batch in ds:
        batch[0].sync()  # data are in Jittor Vars as a model would get them
        n += batch[0].shape[0]
    dt = time.perf_counter() - t0
    return n, dt


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


def make_ours(root, cache, train=True):
    return VE8Dataset(os.path.join(root, VE8.frames_folder), os.path.join(root, VE8.audio_folder),
                      os.path.join(root, VE8.annotation_file(1)), "training", train=train,
                      audio_cache=cache, seed=1, epoch=0)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=107, help="video length in seconds (VE-8 average 107)")
    p.add_argument("--videos", type=int, default=8, help="number of synthetic videos (= samples per pass)")
    p.add_argument("--workers", default="0,2", help="comma-separated worker counts to measure")
    p.add_argument("--batch_size", type=int, default=2, help="batch size of both loaders")
    p.add_argument("--check", type=int, default=2, help="items checked for equal values")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "out"),
                   help="folder for the synthetic data and the MFCC cache")
    args = p.parse_args(argv)

    t = time.perf_counter()
    root = make_data(args.out, args.videos, args.seconds)
    print(f"data: {root} ({time.perf_counter() - t:.1f} s to make or find)")
    check_values(root, args.check)
    cache = os.path.join(args.out, "mfcc_cache_bench")
    bs = args.batch_size
    rows = []
    for workers in [int(w) for w in args.workers.split(",")]:
        ours = make_ours(root, cache)
        release = ReleaseWayDataset(ours, True)
        per_item = (ours.seq_len * 3 * ours.snippet_duration * ours.sample_size ** 2 * 4 + 4096 * 32 * 4)
        release.set_attrs(batch_size=bs, num_workers=workers, buffer_size=max(512 << 20, 2 * bs * per_item))
        r1 = time_pass(release)
        r2 = time_pass(release)  # workers (if any) already running
        release.terminate()
        shutil.rmtree(cache, ignore_errors=True)
        ours.set_attrs(batch_size=bs, num_workers=workers)
        o1 = time_pass(ours)     # cold MFCC cache (+ worker start-up, like the release's pass 1)
        o2 = time_pass(ours)     # warm cache, workers running
        ours.terminate()
        rows.append(("release's way", workers, r1, r2))
        rows.append(("this port", workers, o1, o2))
    print(f"\n{args.videos} videos x {args.seconds:g} s at 30 fps, 320x240 frames; items of 12 x 16 frames "
          f"x 112 x 112 + [4096, 32] audio; batch {bs}")
    print("pass 1: fresh loader (worker start-up included; the port's MFCC cache empty = cold)")
    print("pass 2: second pass over the same loader (workers running; the port's cache warm)")
    print(f"{'loader':<14} {'workers':>7} {'samples':>7} | {'pass 1 s':>8} {'samples/s':>9} {'x':>6} |"
          f" {'pass 2 s':>8} {'samples/s':>9} {'x':>6}")
    base = {}
    for name, w, p1, p2 in rows:
        if name.startswith("release"):
            base[w] = (p1[0] / p1[1], p2[0] / p2[1])
        s1, s2 = p1[0] / p1[1], p2[0] / p2[1]
        print(f"{name:<14} {w:>7} {p1[0]:>7} | {p1[1]:>8.2f} {s1:>9.2f} {s1 / base[w][0]:>5.2f}x |"
              f" {p2[1]:>8.2f} {s2:>9.2f} {s2 / base[w][1]:>5.2f}x")


if __name__ == "__main__":
    main()
