"""Batch prediction against one predict.py call per video: seconds per video, on the CPU.

Run (from the repository root)::

    .venv/bin/python benchmarks/bench_predict.py                    # 4 videos of 30 s, 2 rounds
    .venv/bin/python benchmarks/bench_predict.py --videos 4 --seconds 30 --rounds 3 --workdir /tmp/bp

The model is the release configuration (``opts.py``'s defaults: ResNet-101, 12 snippets of
16 frames at 112x112, 8 classes) with random weights, saved in this project's checkpoint
format: prediction time does not depend on the weights' values. The videos are synthetic
(``tools/make_demo_dataset.py``'s kind: 320x240, 30 fps, with sound), ``--seconds`` long.

One round times ``predict.py V1 ... Vn --csv`` (one process: the model built once, the
next videos extracted by ``--workers`` processes while the model runs) and then ``n``
calls ``predict.py Vi`` (each builds the model and extracts its video before running it),
wall clock, each a fresh process as a user would run it. The machine may be shared:
rounds alternate the two, and the ratio is taken within each round; the 1-minute load
average is printed with every round.
"""
import argparse
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.lockstep import fmt_spread, load_average, spread  # noqa: E402


def make_inputs(workdir, n_videos, seconds):
    """``(checkpoint path, [video paths])`` under ``workdir`` (made once, reused)."""
    from datasets.media import find_ffmpeg

    os.makedirs(workdir, exist_ok=True)
    videos = []
    for i in range(n_videos):
        path = os.path.join(workdir, f"video{i}_{seconds:g}s.mp4")
        if not os.path.exists(path):
            # a moving test pattern and a tone, different for every video
            subprocess.run([find_ffmpeg(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
                            "-f", "lavfi", "-i", f"testsrc2=size=320x240:rate=30:duration={seconds}",
                            "-f", "lavfi", "-i", f"sine=frequency={300 + 90 * i}:sample_rate=44100",
                            "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast",
                            "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", path + ".tmp.mp4"],
                           check=True)
            os.replace(path + ".tmp.mp4", path)
        videos.append(path)
    ckpt = os.path.join(workdir, "release_config_random.npz")
    if not os.path.exists(ckpt):
        from core.jittor_setup import jt
        from core.checkpoint import save_checkpoint
        from datasets.catalog import DATASETS
        from model import checkpoint_meta, generate_model
        from opts import build_parser, finalize_opts

        jt.set_global_seed(0)
        args = build_parser().parse_args([])  # the release's defaults
        model = generate_model(finalize_opts(args))
        save_checkpoint(ckpt, model.state_dict(), None,
                        checkpoint_meta(0, args, DATASETS[args.dataset].classes))
    return ckpt, videos


def timed(cmd):
    start = time.perf_counter()
    r = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr[-2000:]}")
    return time.perf_counter() - start


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--videos", type=int, default=4)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--rounds", type=int, default=2, help="0: make the videos and checkpoint only")
    p.add_argument("--workers", type=int, default=2, help="predict.py --workers of the batch call")
    p.add_argument("--workdir", default="/tmp/vaanet_bench_predict")
    args = p.parse_args(argv)
    ckpt, videos = make_inputs(args.workdir, args.videos, args.seconds)
    predict = [sys.executable, "predict.py", "--checkpoint", ckpt, "--no_progress"]
    n = len(videos)
    batch_s, single_s, ratios = [], [], []
    print(f"{n} videos of {args.seconds:g} s, release config (random weights), CPU")
    for r in range(args.rounds):
        csv = os.path.join(args.workdir, f"round{r}.csv")
        if os.path.exists(csv):
            os.remove(csv)  # a re-run would skip every video
        load = load_average()
        b = timed(predict + ["--workers", str(args.workers), "--csv", csv] + videos) / n
        s = sum(timed(predict + [v]) for v in videos) / n
        batch_s.append(b)
        single_s.append(s)
        ratios.append(s / b)
        print(f"round {r + 1}: batch {b:.1f} s/video, one call per video {s:.1f} s/video, "
              f"ratio {s / b:.2f}x  (load average {load:.1f} -> {load_average():.1f})", flush=True)
    if not ratios:  # --rounds 0: the inputs only
        return
    print(f"batch: {fmt_spread(spread(batch_s), 1)} s/video")
    print(f"one call per video: {fmt_spread(spread(single_s), 1)} s/video")
    print(f"ratio within a round: {fmt_spread(spread(ratios))}")


if __name__ == "__main__":
    main()
