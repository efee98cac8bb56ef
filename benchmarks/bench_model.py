"""Model speed and memory: this Jittor port against the PyTorch release, side by side.

Run (from the repository root)::

    .venv/bin/python benchmarks/bench_model.py --compare --config bench --runs 15   # CPU
    .venv/bin/python benchmarks/bench_model.py --compare --config full               # GPU
    .venv/bin/python benchmarks/bench_model.py --framework jittor --mode eval --runs 5
    .venv/bin/python benchmarks/bench_model.py --compare --json out.json
    .venv/bin/python benchmarks/bench_model.py --baseline /tmp/old --runs 15  # ours vs ours

Configs: ``bench`` is batch 2, seq_len 2, 16x112x112 clips, ResNet-101 (fits a CPU);
``full`` is the release's training defaults, batch 32, seq_len 12 (for a GPU).

Two modes, each framework in each mode in a long-lived process of its own (so that its
peak memory is its own):

- ``eval``: ``model.eval()`` and one forward pass (no graph: ``jt.no_grad`` /
  ``torch.no_grad``), outputs fetched to the host.
- ``train``: ``model.train()`` and one training step: forward, PCCE loss, backward and an
  Adam step (ours: ``core.optimizer.Adam.step(loss)``; the release's: ``torch.optim.Adam``
  over the parameters that need a gradient), the loss fetched to the host.

``--compare`` runs the two frameworks interleaved (``benchmarks/lockstep.py``): after
``--warmup`` untimed iterations each (Jittor compiles its kernels there), ``--runs``
rounds of one timed iteration of each, in alternating order (J T, T J, ...), so that the
machine's drift falls on both. The table gives each side's median time and range, and the
median, quartiles and range of the per-pair ratios ours / release, which hold on a busy
machine where the times themselves do not. The CPU time (the process's, over all its
threads) is given too: waiting for a core does not count there, spinning OpenMP threads
do. Every timed iteration ends in a
synchronisation (``.numpy()``/``.item()`` plus ``jt.sync_all(True)``, or
``torch.cuda.synchronize()``), so the time is the work done, not the work queued.

Memory: on the CPU the process's peak resident set (``VmHWM``, model and inputs
included); on CUDA the peak of tensor memory (torch: ``max_memory_allocated``; Jittor: the
memory profiler's peak of live variables over one extra, untimed, iteration) plus what
the framework's allocator holds (torch: ``max_memory_reserved``; Jittor: ``get_mem_info``).

Both frameworks get the same number of threads (``--threads``, default: every core) and
the same data: random uint8 clips (what this port's loader hands the model) for ours and
the same values as float32 (what the release's loader hands it) for the release, random
float32 MFCC, fixed targets.

``--baseline DIR`` interleaves this checkout's port with the port in DIR (another version
of this repository, e.g. ``git archive <commit> | tar -x -C DIR``) instead of PyTorch: the
per-pair ratio is then the measured effect of the changes between the two; ``--root DIR``
measures the port in DIR instead of this checkout's (so any two versions can be paired).
"""
import argparse
import inspect
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.lockstep import Worker, fmt_spread, interleave, load_average, serve, spread  # noqa: E402

# Neither imports Jittor, so that the PyTorch worker stays free of it.
from datasets.catalog import DATASETS  # noqa: E402
from model import model_config, release_defaults  # noqa: E402
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
    """The release's model options at the config's sizes (``model.model_config``)."""
    return model_config(dict(release_defaults(), dataset=DATASET, **{k: cfg[k] for k in SIZES}))


def positive_mask():
    return DATASETS[DATASET].classes.positive_mask()


def jittor_step(cfg, mode):
    """(one synchronised iteration, device memory figures) for the port (this checkout's,
    or the one whose root is first on sys.path, see ``--root``)."""
    from core.jittor_setup import jt
    from core.loss import PCCELoss
    from core.optimizer import release_adam
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
        optimizer = release_adam(model, 2e-4)

        def step():
            logits = model(visual, audio)[0]
            loss = criterion(logits, target)
            optimizer.step(loss)
            loss.item()
            jt.sync_all(True)

    def memory():
        result = dict(device="cuda" if jt.flags.use_cuda else "cpu")
        if jt.flags.use_cuda:
            jt.flags.profile_memory_enable = 1
            step()
            result["device_peak"] = int(jt.get_max_memory_info().split("[!@#div1!@#]")[0])
            jt.flags.profile_memory_enable = 0
            result["device_held"] = int(jt.get_mem_info().total_cuda_used)
        return result

    return step, memory


def torch_step(cfg, mode, threads):
    """(one synchronised iteration, device memory figures) for the PyTorch reference."""
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

    def memory():
        result = dict(device="cuda" if cuda else "cpu")
        if cuda:
            result["device_peak"] = int(torch.cuda.max_memory_allocated())
            result["device_held"] = int(torch.cuda.max_memory_reserved())
        return result

    return step, memory


def worker(args):
    """One framework in one mode, answering the coordinator (``lockstep.serve``)."""
    if args.root:  # the port's code from another checkout
        sys.path.insert(0, os.path.abspath(args.root))
    cfg = CONFIGS[args.config]
    if args.framework == "jittor":
        step, memory = jittor_step(cfg, args.mode)
    else:
        step, memory = torch_step(cfg, args.mode, args.threads)

    def warmup(n):
        for _ in range(n):
            step()

    def timed():
        start, start_cpu = time.perf_counter(), time.process_time()
        step()
        return [time.perf_counter() - start, time.process_time() - start_cpu]

    def finish():
        return dict(memory(), peak_rss=peak_rss_bytes())  # VmHWM before the extra step

    serve(dict(warmup=warmup, step=timed, finish=finish))


def start_worker(args, framework, mode, root=None):
    env = dict(os.environ)
    # oneDNN and Jittor's OpenMP kernels read OMP_NUM_THREADS; torch also gets set_num_threads.
    env["OMP_NUM_THREADS"] = str(args.threads)
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--framework", framework,
           "--mode", mode, "--config", args.config, "--threads", str(args.threads)]
    if root:
        cmd += ["--root", root]
    return Worker(cmd, env=env, cwd=root or ROOT, label=f"{framework} {mode} {root or ''}")


def measure_mode(args, frameworks, mode):
    """Warm-up, interleaved timed pairs and peak memory of every framework in one mode
    (with ``--baseline``, the two sides are this port and the baseline's)."""
    if args.baseline:
        workers = [start_worker(args, "jittor", mode, args.root),
                   start_worker(args, "jittor", mode, args.baseline)]
    else:
        workers = [start_worker(args, f, mode, args.root if f == "jittor" else None)
                   for f in frameworks]
    try:
        for w in workers:
            w.call("warmup", n=args.warmup)
        load = [load_average()]
        rounds = interleave(workers, "step", args.runs)
        load.append(load_average())
        finals = [w.call("finish") for w in workers]
    finally:
        for w in workers:
            w.close()
    results = {}
    for i, (f, final) in enumerate(zip(frameworks, finals)):
        times, cpu = [r[i][0] for r in rounds], [r[i][1] for r in rounds]
        results[f] = dict(final, times=times, cpu_times=cpu, time=spread(times), cpu=spread(cpu))
        print(f"  {f:6s} {mode:5s} " + " ".join(f"{t:.3f}" for t in times)
              + f" s; peak RSS {final['peak_rss'] / 2**20:.0f} MiB", file=sys.stderr, flush=True)
    out = dict(frameworks=results, load_average=load)
    if len(frameworks) == 2:
        for key, j in (("ratio", 0), ("cpu_ratio", 1)):
            out[key + "s"] = [r[0][j] / r[1][j] for r in rounds]
            out[key] = spread(out[key + "s"])
    return out


def mib(n):
    return f"{n / 2**20:.0f} MiB"


def print_table(measured, frameworks, args):
    cfg = CONFIGS[args.config]
    device = next(iter(next(iter(measured.values()))["frameworks"].values()))["device"]
    loads = [l for m in measured.values() for l in m["load_average"]]
    print(f"\nconfig {args.config}: {cfg}; {args.threads} threads; device {device}; "
          f"{args.warmup} warm-up iterations, then {args.runs} interleaved pairs "
          f"(1-min load average {min(loads):.1f}-{max(loads):.1f})")
    pair = len(frameworks) == 2
    header = f"{'':22s}" + "".join(f"{f + ' median [range]':>26s}" for f in frameworks)
    what = "ours/baseline" if args.baseline else "ours/release"
    print(header + (f"   {what} per pair: median (IQR, range)" if pair else ""))

    def row(label, cells, ratio=""):
        print(f"{label:22s}" + "".join(f"{c:>26s}" for c in cells) + (f"   {ratio}" if ratio else ""))

    for label, key, ratio in (("time", "time", "ratio"), ("CPU time", "cpu", "cpu_ratio")):
        for mode, m in measured.items():
            cells = [f"{m['frameworks'][f][key]['median']:.3f} s "
                     f"[{m['frameworks'][f][key]['min']:.3f}-{m['frameworks'][f][key]['max']:.3f}]"
                     for f in frameworks]
            row(f"{mode} {label}", cells, fmt_spread(m[ratio]) if pair else "")
    fields = [("peak host RSS", "peak_rss")]
    if device == "cuda":
        fields += [("peak device tensors", "device_peak"), ("device held", "device_held")]
    for label, key in fields:
        for mode, m in measured.items():
            values = [m["frameworks"][f][key] for f in frameworks]
            row(f"{mode} {label}", [mib(v) for v in values],
                f"{values[0] / values[1]:.2f}" if pair else "")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--framework", choices=FRAMEWORKS, default="jittor")
    parser.add_argument("--compare", action="store_true", help="both frameworks, interleaved")
    parser.add_argument("--mode", choices=MODES + ("both",), default="both")
    parser.add_argument("--config", choices=sorted(CONFIGS), default="bench")
    parser.add_argument("--runs", type=int, default=9,
                        help="timed iterations of each framework; with --compare, the "
                             "number of interleaved pairs")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--json", help="write every measurement to this file")
    parser.add_argument("--baseline", help="compare with the port in this directory "
                                           "(another checkout) instead of PyTorch")
    parser.add_argument("--root", help="the port to measure is the one in this directory "
                                       "(default: this checkout)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    frameworks = ("ours", "baseline") if args.baseline else \
        FRAMEWORKS if args.compare else (args.framework,)
    modes = MODES if args.mode == "both" else (args.mode,)
    measured = {m: measure_mode(args, frameworks, m) for m in modes}
    print_table(measured, frameworks, args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(config=args.config, settings=CONFIGS[args.config],
                           threads=args.threads, runs=args.runs, warmup=args.warmup,
                           modes=measured), f, indent=1)


if __name__ == "__main__":
    main()
