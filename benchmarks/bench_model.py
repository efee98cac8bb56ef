"""Model speed and memory: this Jittor port against the PyTorch re-implementation
(``tests/torch_reference.py``) and the release's own model, side by side.

Run (from the repository root)::

    .venv/bin/python benchmarks/bench_model.py --compare --config bench --runs 15   # CPU
    .venv/bin/python benchmarks/bench_model.py --compare --release_src ../VAANet --runs 9
    .venv/bin/python benchmarks/bench_model.py --compare --release_src ../VAANet \
        --release_python ../release-venv/bin/python        # the release in its own venv
    .venv/bin/python benchmarks/bench_model.py --compare --config full               # GPU
    .venv/bin/python benchmarks/bench_model.py --framework jittor --mode eval --runs 5
    .venv/bin/python benchmarks/bench_model.py --compare --json out.json
    .venv/bin/python benchmarks/bench_model.py --baseline /tmp/old --runs 15  # ours vs ours

Configs: ``bench`` is batch 2, seq_len 2, 16x112x112 clips, ResNet-101 (fits a CPU);
``full`` is the release's training defaults, batch 32, seq_len 12 (for a GPU).

The sides: the port; with ``--compare`` the re-implementation, built from stock
``torch.nn`` layers; with ``--release_src DIR`` the release's own ``models/vaanet.py``,
imported from a checkout of the PyTorch release in DIR (nothing of it is part of this
project; ``benchmarks/release_model.py`` builds it with the port's options, without
``.cuda()``, downloads or the Kinetics checkpoint), run by ``--release_python`` (an
environment with torch and torchvision; by default this one). Both PyTorch sides get the same inputs,
PCCE loss (the re-implementation's ``pcce_loss``) and optimizer.

Two modes, each side in each mode in a long-lived process of its own (so that its peak
memory is its own):

- ``eval``: ``model.eval()`` and one forward pass (no graph: ``jt.no_grad`` /
  ``torch.no_grad``), outputs fetched to the host.
- ``train``: ``model.train()`` and one training step: forward, PCCE loss, backward and an
  Adam step (ours: ``core.optimizer.Adam.step(loss)``; PyTorch's: ``torch.optim.Adam``
  over the parameters that need a gradient), the loss fetched to the host.

The sides run interleaved (``benchmarks/lockstep.py``): after ``--warmup`` untimed
iterations each (Jittor compiles its kernels there), ``--runs`` rounds of one timed
iteration of each side, the order reversed every round (J T R, R T J, ...), so that the
machine's drift falls on all. The table gives each side's median time and range, and the
median, quartiles and range of the per-round ratios ours / each other side, which hold on
a busy machine where the times themselves do not. The CPU time (the process's, over all its
threads) is given too: waiting for a core does not count there, spinning OpenMP threads
do. Every timed iteration ends in a
synchronisation (``.numpy()``/``.item()`` plus ``jt.sync_all(True)``, or
``torch.cuda.synchronize()``), so the time is the work done, not the work queued.

Memory: on the CPU the process's peak resident set (``VmHWM``, model and inputs
included); on CUDA the peak of tensor memory (torch: ``max_memory_allocated``; Jittor: the
memory profiler's peak of live variables over one extra, untimed, iteration) plus what
the framework's allocator holds (torch: ``max_memory_reserved``; Jittor: ``get_mem_info``).

The same model: after the timing (and the memory figures) of each mode, the last side
saves its weights, every side loads them (the port with ``core.checkpoint.load_weights``)
and runs an eval forward on the benchmark's inputs; if any side's outputs (logits and
attention) are further from the last side's than float32 noise
(``SAME_MODEL_TOLERANCE``), the run stops with an error and reports nothing.

All sides get the same number of threads (``--threads``, default: every core) and
the same data: random uint8 clips (what this port's loader hands the model) for ours and
the same values as float32 (what the release's loader hands it) for PyTorch, random
float32 MFCC, fixed targets. The table's header names the CPU.

``--baseline DIR`` interleaves this checkout's port with the port in DIR (another version
of this repository, e.g. ``git archive <commit> | tar -x -C DIR``) instead of PyTorch: the
per-pair ratio is then the measured effect of the changes between the two; ``--root DIR``
measures the port in DIR instead of this checkout's (so any two versions can be paired).
"""
import argparse
import collections
import inspect
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.lockstep import (  # noqa: E402
    Worker, cpu_model, fmt_spread, interleave, load_average, serve, spread)

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

#: The largest distance (``max_rel``: max abs difference over max abs value) of a side's
#: eval outputs to the weights' owner's at which the two count as one model: the port's sit
#: ~2e-5 from the release's at config bench, up to ~7e-4 from float64 with oneDNN 3.x
#: (benchmarks/README.md); a wrong layer or weight moves them by O(1).
SAME_MODEL_TOLERANCE = 1e-3

#: What a side hands the coordinator: ``step()`` one synchronised iteration; ``memory()``
#: the device's memory figures; ``save_weights(path)``; ``eval_outputs(path)`` the eval
#: outputs (as lists) with the weights of ``path`` loaded.
Side = collections.namedtuple("Side", "step memory save_weights eval_outputs")


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
    """The port's ``Side`` (this checkout's port, or the one whose root is first on
    sys.path, see ``--root``)."""
    import numpy as np
    from core.checkpoint import load_weights, save_checkpoint
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

    def save_weights(path):
        save_checkpoint(path, {k: v.numpy() for k, v in model.state_dict().items()})

    def eval_outputs(path):
        load_weights(model, path)
        model.eval()
        with jt.no_grad():
            return [o.numpy().astype(np.float64).tolist() for o in model(visual, audio)]

    return Side(step, memory, save_weights, eval_outputs)


def torch_model(cfg, release_src=None):
    """The PyTorch re-implementation (``tests/torch_reference.py``), or with
    ``release_src`` the release's own model, built from that checkout
    (``benchmarks/release_model.py``), on the CPU."""
    options = model_options(cfg)
    if release_src:
        from benchmarks.release_model import build_release_model
        return build_release_model(release_src, options)
    from tests.torch_reference import TorchVAANet
    return TorchVAANet(**{k: options[k] for k in inspect.signature(TorchVAANet).parameters})


def torch_weights(model, inputs, device):
    """A PyTorch side's ``save_weights`` and ``eval_outputs`` (``Side``)."""
    import torch

    def save_weights(path):
        torch.save(model.state_dict(), path)

    def eval_outputs(path):
        model.load_state_dict(torch.load(path, map_location=device))
        model.eval()
        with torch.no_grad():
            return [o.double().cpu().numpy().tolist() for o in model(*inputs)]

    return save_weights, eval_outputs


def torch_step(cfg, mode, threads, release_src=None):
    """The ``Side`` of the re-implementation or the release (``torch_model``): the same
    inputs, loss and optimizer for both."""
    import torch
    from tests.torch_reference import pcce_loss

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cuda = torch.cuda.is_available() and os.environ.get("VAANET_NO_CUDA", "0") in ("", "0")
    device = torch.device("cuda" if cuda else "cpu")
    model = torch_model(cfg, release_src).to(device)
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

    return Side(step, memory, *torch_weights(model, (visual, audio), device))


def worker(args):
    """One side in one mode, answering the coordinator (``lockstep.serve``)."""
    if args.root:  # the port's code from another checkout
        sys.path.insert(0, os.path.abspath(args.root))
    cfg = CONFIGS[args.config]
    if args.framework == "jittor":
        side = jittor_step(cfg, args.mode)
    else:
        side = torch_step(cfg, args.mode, args.threads, args.release_src)

    def warmup(n):
        for _ in range(n):
            side.step()

    def timed():
        start, start_cpu = time.perf_counter(), time.process_time()
        side.step()
        return [time.perf_counter() - start, time.process_time() - start_cpu]

    def finish():
        return dict(side.memory(), peak_rss=peak_rss_bytes())  # VmHWM before the extra step

    def save_weights(path):
        side.save_weights(path)

    serve(dict(warmup=warmup, step=timed, finish=finish, save_weights=save_weights,
               eval_outputs=side.eval_outputs))


def sides(args):
    """``[(name, worker options)]`` of the sides to run, the port first."""
    if args.baseline:
        return [("ours", dict(framework="jittor", root=args.root)),
                ("baseline", dict(framework="jittor", root=args.baseline))]
    if not (args.compare or args.release_src):
        return [(args.framework, dict(framework=args.framework,
                                      root=args.root if args.framework == "jittor" else None))]
    out = [("jittor", dict(framework="jittor", root=args.root))]
    if args.compare:
        out.append(("torch", dict(framework="torch")))
    if args.release_src:
        out.append(("release", dict(framework="torch", release_src=args.release_src,
                                    python=args.release_python)))
    return out


def start_worker(args, mode, framework, root=None, release_src=None, python=None):
    env = dict(os.environ)
    # oneDNN and Jittor's OpenMP kernels read OMP_NUM_THREADS; torch also gets set_num_threads.
    env["OMP_NUM_THREADS"] = str(args.threads)
    cmd = [python or sys.executable, os.path.abspath(__file__), "--worker", "--framework", framework,
           "--mode", mode, "--config", args.config, "--threads", str(args.threads)]
    if root:
        cmd += ["--root", root]
    if release_src:
        cmd += ["--release_src", os.path.abspath(release_src)]
    return Worker(cmd, env=env, cwd=root or ROOT,
                  label=f"{'release' if release_src else framework} {mode} {root or ''}")


def same_model(workers, names):
    """``{name: distance}``: every side's eval outputs (logits, alpha, beta, gamma) with the
    last side's weights loaded, to the last side's own (``max_rel``, the largest of the
    four)."""
    import numpy as np
    from tests.parity_reference import max_rel

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "weights")
        workers[-1].call("save_weights", path=path)
        outputs = [[np.array(o) for o in w.call("eval_outputs", path=path)] for w in workers]
    return {name: max(max_rel(a, b) for a, b in zip(out, outputs[-1]))
            for name, out in zip(names[:-1], outputs[:-1])}


def measure_mode(args, named_sides, mode):
    """Warm-up, interleaved timed pairs (rounds, with more than two sides), peak memory and
    the same-model check of every side in one mode."""
    names = [name for name, _ in named_sides]
    workers = [start_worker(args, mode, **options) for _, options in named_sides]
    try:
        for w in workers:
            w.call("warmup", n=args.warmup)
        load = [load_average()]
        rounds = interleave(workers, "step", args.runs)
        load.append(load_average())
        finals = [w.call("finish") for w in workers]
        distances = same_model(workers, names) if len(workers) > 1 else {}
    finally:
        for w in workers:
            w.close()
    far = {n: d for n, d in distances.items() if d > SAME_MODEL_TOLERANCE}
    if far:
        sys.exit(f"bench_model.py: {mode} mode: with {names[-1]}'s weights, the eval outputs of "
                 + ", ".join(f"{n} are {d:.1e}" for n, d in far.items())
                 + f" away from {names[-1]}'s (tolerance {SAME_MODEL_TOLERANCE:g} of the largest "
                 "value): they are not the same model, so no figures are reported.")
    results = {}
    for i, (name, final) in enumerate(zip(names, finals)):
        times, cpu = [r[i][0] for r in rounds], [r[i][1] for r in rounds]
        results[name] = dict(final, times=times, cpu_times=cpu, time=spread(times), cpu=spread(cpu))
        print(f"  {name:8s} {mode:5s} " + " ".join(f"{t:.3f}" for t in times)
              + f" s; peak RSS {final['peak_rss'] / 2**20:.0f} MiB", file=sys.stderr, flush=True)
    out = dict(frameworks=results, load_average=load, distances=distances)
    for key, j in (("ratio", 0), ("cpu_ratio", 1)):
        out[key + "s"] = {n: [r[0][j] / r[i][j] for r in rounds] for i, n in enumerate(names) if i}
        out[key] = {n: spread(v) for n, v in out[key + "s"].items()}
    return out


def mib(n):
    return f"{n / 2**20:.0f} MiB"


def row(label, cells, width=26):
    print(f"{label:22s}" + "".join(f"{c:>{width}s}" for c in cells))


def print_table(measured, names, args):
    cfg = CONFIGS[args.config]
    device = next(iter(next(iter(measured.values()))["frameworks"].values()))["device"]
    loads = [l for m in measured.values() for l in m["load_average"]]
    print(f"\nconfig {args.config}: {cfg}; {args.threads} threads; device {device}; "
          f"CPU {cpu_model()}; {args.warmup} warm-up iterations, then {args.runs} "
          f"interleaved rounds (1-min load average {min(loads):.1f}-{max(loads):.1f})")
    row("", [f"{n} median [range]" for n in names])
    for label, key in (("time", "time"), ("CPU time", "cpu")):
        for mode, m in measured.items():
            row(f"{mode} {label}", [f"{s['median']:.3f} s [{s['min']:.3f}-{s['max']:.3f}]"
                                    for s in (m["frameworks"][n][key] for n in names)])
    fields = [("peak host RSS", "peak_rss")]
    if device == "cuda":
        fields += [("peak device tensors", "device_peak"), ("device held", "device_held")]
    for label, key in fields:
        for mode, m in measured.items():
            row(f"{mode} {label}", [mib(m["frameworks"][n][key]) for n in names])
    if len(names) == 1:
        return
    others = names[1:]
    print("\nours / each side: time per round, median (IQR, range); memory")
    row("", [f"ours/{n}" for n in others], 44)
    for label, key in (("time", "ratio"), ("CPU time", "cpu_ratio")):
        for mode, m in measured.items():
            row(f"{mode} {label}", [fmt_spread(m[key][n]) for n in others], 44)
    for label, key in fields:
        for mode, m in measured.items():
            ours = m["frameworks"][names[0]][key]
            row(f"{mode} {label}", [f"{ours / m['frameworks'][n][key]:.2f}" for n in others], 44)
    print(f"same weights ({names[-1]}'s), eval outputs' distance to {names[-1]}'s: "
          + "; ".join(f"{mode} " + ", ".join(f"{n} {d:.1e}" for n, d in m["distances"].items())
                      for mode, m in measured.items()))


def check_release(parser, args):
    """Usage errors of ``--release_src`` before any worker starts."""
    from benchmarks.release_model import ReleaseError, check_release_src
    cfg = CONFIGS[args.config]
    try:
        check_release_src(args.release_src, model_options(cfg), cfg["batch"])
    except ReleaseError as e:
        parser.error(str(e))
    python = args.release_python or sys.executable
    found = subprocess.run([python, "-c", "import torch, torchvision"], capture_output=True,
                           text=True)
    if found.returncode != 0:
        why = (found.stderr.strip().splitlines() or ["no message"])[-1]
        parser.error(f"the release's model needs torch and torchvision, which {python} cannot "
                     f"import ({why}): see "
                     "benchmarks/README.md, or name another Python with --release_python")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--framework", choices=FRAMEWORKS, default="jittor")
    parser.add_argument("--compare", action="store_true",
                        help="the port and the PyTorch re-implementation, interleaved")
    parser.add_argument("--release_src", metavar="DIR",
                        help="also the release's own model, imported from its checkout in DIR")
    parser.add_argument("--release_python", metavar="PY",
                        help="the Python that runs the release's side: one with torch and "
                             "torchvision, e.g. the release's own environment (default: "
                             "this one)")
    parser.add_argument("--mode", choices=MODES + ("both",), default="both")
    parser.add_argument("--config", choices=sorted(CONFIGS), default="bench")
    parser.add_argument("--runs", type=int, default=9,
                        help="timed iterations of each side; with several sides, the "
                             "number of interleaved rounds")
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
    if args.release_src:
        check_release(parser, args)

    named_sides = sides(args)
    names = [name for name, _ in named_sides]
    modes = MODES if args.mode == "both" else (args.mode,)
    measured = {m: measure_mode(args, named_sides, m) for m in modes}
    print_table(measured, names, args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(config=args.config, settings=CONFIGS[args.config], cpu=cpu_model(),
                           threads=args.threads, runs=args.runs, warmup=args.warmup,
                           modes=measured), f, indent=1)


if __name__ == "__main__":
    main()
