"""Model speed and memory: this Jittor port against the PyTorch release, side by side.

Run (from the repository root)::

    .venv/bin/python benchmarks/bench_model.py --compare --config bench         # CPU
    .venv/bin/python benchmarks/bench_model.py --compare --config full          # GPU
    .venv/bin/python benchmarks/bench_model.py --framework jittor --mode eval --runs 5
    .venv/bin/python benchmarks/bench_model.py --compare --runs 5 --warmup 2 --json out.json

Configs: ``bench`` is batch 2, seq_len 2, 16x112x112 clips, ResNet-101 (fits a CPU);
``full`` is the release's training defaults, batch 32, seq_len 12 (for a GPU).

Two modes, each measured in a process of its own so that its peak memory is its own:

- ``eval``: ``model.eval()`` and one forward pass (no graph: ``jt.no_grad`` /
  ``torch.no_grad``), outputs fetched to the host.
- ``train``: ``model.train()`` and one training step: forward, PCCE loss, backward and an
  Adam step (ours: ``core.optimizer.Adam.step(loss)``; the release's: ``torch.optim.Adam``
  over the parameters that need a gradient), the loss fetched to the host.

Each mode runs ``--warmup`` untimed iterations (Jittor compiles its kernels there), then
``--runs`` timed ones; the table gives medians. Every timed iteration ends in a
synchronisation (``.numpy()``/``.item()`` plus ``jt.sync_all(True)``, or
``torch.cuda.synchronize()``), so the time is the work done, not the work queued.

Memory: on the CPU the process's peak resident set (``VmHWM``, model and inputs
included); on CUDA the peak of tensor memory (torch: ``max_memory_allocated``; Jittor: the
memory profiler's peak of live variables over one extra, untimed, iteration) plus what
the framework's allocator holds (torch: ``max_memory_reserved``; Jittor: ``get_mem_info``).

Both frameworks get the same number of threads (``--threads``, default: every core) and
the same data: random uint8 clips (what this port's loader hands the model) for ours and
the same values as float32 (what the release's loader hands it) for the release, random
float32 MFCC, fixed targets. ``--compare`` starts one subprocess per framework and mode
and prints one table with ratios ours / release (lower is better).
"""
import argparse
import json
import os
import inspect
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# Neither imports Jittor, so that the PyTorch worker stays free of it.
from datasets.catalog import DATASETS  # noqa: E402
from opts import add_model_options, add_training_options, defaults_of  # noqa: E402

DATASET = "ve8"  # its classes and polarity, for the PCCE loss
SIZES = ("seq_len", "snippet_duration", "sample_size", "resnet_depth")


def release_config(**changes):
    """The release's batch size and model sizes (opts.py's defaults), with ``changes``."""
    d = defaults_of(add_model_options, add_training_options)
    return dict(dict(batch=d["batch_size"], **{k: d[k] for k in SIZES}), **changes)


CONFIGS = {"bench": release_config(batch=2, seq_len=2), "full": release_config()}
FRAMEWORKS = ("jittor", "torch")
MODES = ("eval", "train")


def peak_rss_bytes():
    """The process's peak resident set size (VmHWM)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def make_batch(cfg, seed=0):
    import numpy as np
    rng = np.random.default_rng(seed)
    b, s, t, size = cfg["batch"], cfg["seq_len"], cfg["snippet_duration"], cfg["sample_size"]
    visual = rng.integers(0, 256, (b, s, 3, t, size, size), dtype=np.uint8)
    audio = (rng.standard_normal((b, 4096, 32)) * 20).astype(np.float32)
    target = (np.arange(b) % len(DATASETS[DATASET].classes)).astype(np.int64)
    return visual, audio, target


def model_options(cfg):
    """opts.py's model options at the config's sizes, with the dataset's class count."""
    out = defaults_of(add_model_options)
    out.update({k: cfg[k] for k in SIZES}, dataset=DATASET, n_classes=len(DATASETS[DATASET].classes))
    return out


def positive_mask():
    return DATASETS[DATASET].classes.positive_mask()


def time_iterations(step, warmup, runs):
    for _ in range(warmup):
        step()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


def bench_jittor(cfg, mode, warmup, runs):
    from core.jittor_setup import jt
    from core.loss import PCCELoss
    from core.optimizer import Adam
    from model import generate_model

    jt.set_global_seed(0)
    model = generate_model(model_options(cfg))
    visual_np, audio_np, target_np = make_batch(cfg)
    visual, audio, target = jt.array(visual_np), jt.array(audio_np), jt.array(target_np)
    jt.sync_all(True)

    if mode == "eval":
        model.eval()

        def step():
            with jt.no_grad():
                outputs = model(visual, audio)
            [o.numpy() for o in outputs]
            jt.sync_all(True)
    else:
        model.train()
        criterion = PCCELoss(positive_mask())
        optimizer = Adam([p for p in model.parameters() if p.requires_grad], lr=2e-4)

        def step():
            logits = model(visual, audio)[0]
            loss = criterion(logits, target)
            optimizer.step(loss)
            loss.item()
            jt.sync_all(True)

    times = time_iterations(step, warmup, runs)
    result = dict(times=times, peak_rss=peak_rss_bytes())
    if jt.flags.use_cuda:
        jt.flags.profile_memory_enable = 1
        step()
        result["device_peak"] = int(jt.get_max_memory_info().split("[!@#div1!@#]")[0])
        jt.flags.profile_memory_enable = 0
        result["device_held"] = int(jt.get_mem_info().total_cuda_used)
    result["device"] = "cuda" if jt.flags.use_cuda else "cpu"
    return result


def bench_torch(cfg, mode, warmup, runs, threads):
    import torch
    from tests.torch_reference import TorchVAANet, pcce_loss

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cuda = torch.cuda.is_available() and os.environ.get("VAANET_NO_CUDA", "0") in ("", "0")
    device = torch.device("cuda" if cuda else "cpu")
    options = model_options(cfg)
    model = TorchVAANet(**{k: options[k] for k in inspect.signature(TorchVAANet).parameters}).to(device)
    positive = tuple(int(i) for i in positive_mask().nonzero()[0])
    visual_np, audio_np, target_np = make_batch(cfg)
    # The release's loader yields float32 clips.
    visual = torch.from_numpy(visual_np.astype("float32")).to(device)
    audio = torch.from_numpy(audio_np).to(device)
    target = torch.from_numpy(target_np).to(device)

    def sync():
        if cuda:
            torch.cuda.synchronize()

    if mode == "eval":
        model.eval()

        def step():
            with torch.no_grad():
                outputs = model(visual, audio)
            [o.cpu().numpy() for o in outputs]
            sync()
    else:
        model.train()
        optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=2e-4)

        def step():
            optimizer.zero_grad()
            logits = model(visual, audio)[0]
            loss = pcce_loss(logits, target, positive)
            loss.backward()
            optimizer.step()
            loss.item()
            sync()

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times = time_iterations(step, warmup, runs)
    result = dict(times=times, peak_rss=peak_rss_bytes(), device="cuda" if cuda else "cpu")
    if cuda:
        result["device_peak"] = int(torch.cuda.max_memory_allocated())
        result["device_held"] = int(torch.cuda.max_memory_reserved())
    return result


def worker(args):
    """Run one framework in one mode in this process; print one JSON line."""
    cfg = CONFIGS[args.config]
    if args.framework == "jittor":
        result = bench_jittor(cfg, args.mode, args.warmup, args.runs)
    else:
        result = bench_torch(cfg, args.mode, args.warmup, args.runs, args.threads)
    result.update(framework=args.framework, mode=args.mode, config=args.config,
                  threads=args.threads, median=statistics.median(result["times"]),
                  min=min(result["times"]))
    print("RESULT " + json.dumps(result), flush=True)


def run_subprocess(args, framework, mode):
    env = dict(os.environ)
    # oneDNN and Jittor's OpenMP kernels read OMP_NUM_THREADS; torch also gets set_num_threads.
    env["OMP_NUM_THREADS"] = str(args.threads)
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--framework", framework,
           "--mode", mode, "--config", args.config, "--runs", str(args.runs),
           "--warmup", str(args.warmup), "--threads", str(args.threads)]
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"{framework} {mode} failed (exit {proc.returncode})")
    result = json.loads(lines[-1][len("RESULT "):])
    print(f"  {framework:6s} {mode:5s} median {result['median']:.3f} s  "
          f"runs {' '.join(f'{t:.3f}' for t in result['times'])}  "
          f"peak RSS {result['peak_rss'] / 2**20:.0f} MiB", file=sys.stderr, flush=True)
    return result


def mib(n):
    return f"{n / 2**20:.0f} MiB"


def print_table(results, frameworks, args):
    cfg = CONFIGS[args.config]
    print(f"\nconfig {args.config}: {cfg}; {args.threads} threads; median of {args.runs} runs "
          f"after {args.warmup} warm-up; device {results[0]['device']}")
    rows = [("eval forward time", "eval", "median", lambda v: f"{v:.3f} s"),
            ("train step time", "train", "median", lambda v: f"{v:.3f} s"),
            ("eval forward time (min)", "eval", "min", lambda v: f"{v:.3f} s"),
            ("train step time (min)", "train", "min", lambda v: f"{v:.3f} s"),
            ("eval peak host RSS", "eval", "peak_rss", mib),
            ("train peak host RSS", "train", "peak_rss", mib)]
    if any("device_peak" in r for r in results):
        rows += [("eval peak device tensors", "eval", "device_peak", mib),
                 ("train peak device tensors", "train", "device_peak", mib),
                 ("eval device held", "eval", "device_held", mib),
                 ("train device held", "train", "device_held", mib)]
    by_key = {(r["framework"], r["mode"]): r for r in results}
    header = f"{'':28s}" + "".join(f"{f:>14s}" for f in frameworks)
    if len(frameworks) == 2:
        header += f"{'ours/release':>14s}"
    print(header)
    for label, mode, field, fmt in rows:
        values = [by_key.get((f, mode), {}).get(field) for f in frameworks]
        if all(v is None for v in values):
            continue
        line = f"{label:28s}" + "".join(f"{fmt(v) if v is not None else '-':>14s}" for v in values)
        if len(frameworks) == 2 and None not in values:
            line += f"{values[0] / values[1]:>14.2f}"
        print(line)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--framework", choices=FRAMEWORKS, default="jittor")
    parser.add_argument("--compare", action="store_true", help="run both frameworks")
    parser.add_argument("--mode", choices=MODES + ("both",), default="both")
    parser.add_argument("--config", choices=sorted(CONFIGS), default="bench")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--json", help="write every measurement to this file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    frameworks = FRAMEWORKS if args.compare else (args.framework,)
    modes = MODES if args.mode == "both" else (args.mode,)
    results = [run_subprocess(args, f, m) for m in modes for f in frameworks]
    print_table(results, frameworks, args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(config=args.config, settings=CONFIGS[args.config],
                           threads=args.threads, runs=args.runs, warmup=args.warmup,
                           results=results), f, indent=1)


if __name__ == "__main__":
    main()
