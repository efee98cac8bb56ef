"""Every convolution of VAANet, layer by layer: oneDNN 2.2 (Jittor's) against 3.x (PyPI's).

Run (from the repository root, in an environment with ``onednn-cpu-gomp`` and
``onednn-devel-cpu-gomp`` installed)::

    .venv/bin/python benchmarks/bench_conv.py                     # config 'bench', 2 threads
    .venv/bin/python benchmarks/bench_conv.py --pairs 7 --reps 5 --markdown table.md

The layers are taken from the model itself: one eval forward of ``VAANet`` at the
``bench_model.py`` config records the shapes every ``Conv3d``/``Conv2d`` sees (the frozen
3D backbone's, and the audio ResNet-18's, whose backward passes run in training). Two
long-lived workers, one built against each oneDNN (``VAANET_ONEDNN=jittor`` / ``pypi``),
time each pass of each layer in lockstep (``benchmarks/lockstep.py``: pairs in alternating
order, each side the fastest of ``--reps`` calls: on a busy machine a call that lost its
core for a scheduler tick is 4-16 ms slower, whatever the kernel), so the per-pair ratio
3.x / 2.2 holds on a busy machine. ``--clock cpu`` times the process's CPU time instead
(the sum over its threads), which a busy machine does not inflate: time spent waiting
for a core is not counted (with ``OMP_WAIT_POLICY=passive``, neither is the OpenMP
threads' spinning while they wait for each other). Passes: ``fwd`` (the ``onednn_conv3d`` op: inference kind for the frozen
backbone, training kind for the audio stream), ``bwd_data`` and ``bwd_weights`` (the
audio stream's only, the backbone has no backward pass). The 1x1(x1) convolutions of the
backbone run as one matrix product (``models/layers.py``), not as oneDNN convolutions, and
are listed with that product's time next to oneDNN's 1x1 convolution. The table also
names the kernel oneDNN picked for each (``ONEDNN_VERBOSE``'s implementation name).
"""
import argparse
import collections
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.lockstep import Worker, interleave, load_average, serve, spread  # noqa: E402

BUILDS = ("jittor", "pypi")


def model_layers(config):
    """[(name, kind, x shape, w shape, stride, padding, trainable, count)] of every distinct
    convolution the model runs, in order of first use (channels-last shapes)."""
    from benchmarks.bench_model import CONFIGS, make_batch, model_options
    from core.jittor_setup import jt
    from model import generate_model
    from models.layers import Conv2d, Conv3d

    cfg = CONFIGS[config]
    model = generate_model(model_options(cfg))
    model.eval()
    seen = collections.OrderedDict()

    def hook(name):
        def record(module, inputs, output):
            x = tuple(inputs[0].shape)
            w = tuple(module.weight.shape)
            if isinstance(module, Conv2d):  # as the 3D convolution of depth 1 that it runs
                x = (x[0], 1) + x[1:]
                w = w[:2] + (1,) + w[2:]
                stride, padding = (1,) + module.stride, (0,) + module.padding
            else:
                stride, padding = module.stride, module.padding
            key = (x, w, tuple(stride), tuple(padding))
            if key in seen:
                seen[key][-1] += 1
            else:
                seen[key] = [name, x, w, tuple(stride), tuple(padding),
                             name.startswith("a_resnet"), 1]
        return record

    for name, module in model.named_modules():
        if isinstance(module, (Conv2d, Conv3d)):
            module.register_forward_hook(hook(name))
    visual, audio, _ = make_batch(cfg)
    with jt.no_grad():
        [o.sync() for o in model(jt.array(visual), jt.array(audio))]
    return [tuple(v) for v in seen.values()]


def dnnl_verbose_impl(lib_marker, run):
    """The implementation name oneDNN reports (its verbose mode, on stdout) for the
    convolution that ``run()`` executes; ``lib_marker`` picks the library in this process."""
    import ctypes
    import tempfile
    with open("/proc/self/maps") as f:
        paths = sorted({l.split()[-1] for l in f if lib_marker in l})
    if not paths:
        return "?"
    lib, libc = ctypes.CDLL(paths[0]), ctypes.CDLL(None)
    with tempfile.TemporaryFile() as tmp:
        saved = os.dup(1)
        os.dup2(tmp.fileno(), 1)
        lib.dnnl_set_verbose(1)
        try:
            run()
        finally:
            lib.dnnl_set_verbose(0)
            libc.fflush(None)
            os.dup2(saved, 1)
            os.close(saved)
        tmp.seek(0)
        lines = [l.decode() for l in tmp.read().splitlines() if b",exec," in l]
    for line in lines:  # ...,exec,cpu,convolution,IMPLEMENTATION,...
        fields = line.split(",")
        i = fields.index("exec")
        if fields[i + 2] == "convolution":
            return fields[i + 3]
    return "?"


def worker(args):
    import numpy as np
    from core.jittor_setup import jt
    from models.kernels.onednn import BLOCKED, onednn_ops, onednn_version

    layers = model_layers(args.config)
    ops = onednn_ops()
    rng = np.random.default_rng(0)
    marker = "libdnnl.so.3" if onednn_version().startswith("3") else "libdnnl.so.2"
    if not any(marker in l for l in open("/proc/self/maps")):
        marker = "mkldnn"
    cache = {}

    def tensors(i):
        if i not in cache:
            _, x, w, stride, padding, _, _ = layers[i]
            xv = jt.array(rng.standard_normal(x).astype(np.float32))
            wv = jt.array((rng.standard_normal(w) * 0.05).astype(np.float32))
            y = ops.onednn_conv3d(xv, wv, *stride, *padding, 1)
            dy = jt.array(rng.standard_normal(y.shape).astype(np.float32))
            jt.sync_all(True)
            cache.clear()
            cache[i] = (xv, wv, dy)
        return cache[i]

    def call(i, pass_):
        _, x, w, stride, padding, trainable, _ = layers[i]
        xv, wv, dy = tensors(i)
        if pass_ == "fwd":
            out = ops.onednn_conv3d(xv, wv, *stride, *padding, int(trainable), BLOCKED)
        elif pass_ == "bwd_data":
            out = ops.onednn_conv3d_backward_x(wv, dy, *x[1:4], *stride, *padding)
        elif pass_ == "bwd_weights":
            out = ops.onednn_conv3d_backward_w(xv, dy, *w[2:], *stride, *padding)
        else:  # the 1x1x1 convolutions' matrix product (models/layers.py Conv3d._pointwise)
            st, sh, sw = stride
            x2 = xv[:, ::st, ::sh, ::sw] if (st, sh, sw) != (1, 1, 1) else xv
            x2 = x2.reshape(-1, w[1])
            jt.sync([x2])
            out = jt.mkl_ops.mkl_matmul(x2, wv.reshape(w[0], w[1]), False, True)
        out.sync()
        return out

    clock = time.process_time if args.clock == "cpu" else time.perf_counter

    def timed(i, pass_, reps):
        call(i, pass_)  # the first call compiles and caches
        times = []
        for _ in range(reps):
            start = clock()
            call(i, pass_)
            times.append(clock() - start)
        return min(times)

    def impl(i, pass_):
        if pass_ == "matmul":
            return "sgemm"
        return dnnl_verbose_impl(marker, lambda: call(i, pass_))

    serve(dict(layers=lambda: layers, version=onednn_version, timed=timed, impl=impl))


def passes(layer):
    _, _, w, _, padding, trainable, _ = layer
    pointwise = w[2:] == (1, 1, 1) and padding == (0, 0, 0)
    if trainable:
        return ["fwd", "bwd_data", "bwd_weights"]
    return ["fwd", "matmul"] if pointwise else ["fwd"]


def describe(layer):
    name, x, w, stride, padding, _, count = layer
    k = "x".join(map(str, w[2:]))
    s = "x".join(map(str, stride))
    spatial = "x".join(map(str, x[1:4]))
    return f"{name}{f' (x{count})' if count > 1 else ''}", f"{w[1]}->{w[0]} k{k} s{s} on {x[0]}x{spatial}"


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="bench")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--reps", type=int, default=5, help="calls per timing (the fastest counts)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall time, or the process's CPU time (all threads)")
    parser.add_argument("--markdown", help="also write the table to this file")
    parser.add_argument("--worker", choices=BUILDS, help=argparse.SUPPRESS)
    return parser.parse_args()


def measure(args):
    """``(versions, rows, load averages)``: each layer's passes timed in both builds'
    workers, interleaved; a row is ``(layer, pass, median times, ratio spread, kernels)``."""
    workers = []
    for build in BUILDS:
        env = dict(os.environ, VAANET_ONEDNN=build, OMP_NUM_THREADS=str(args.threads))
        workers.append(Worker([sys.executable, os.path.abspath(__file__), "--worker", build,
                               "--config", args.config, "--clock", args.clock],
                              env=env, cwd=ROOT, label=build))
    try:
        versions = [w.call("version") for w in workers]
        layers = [(l[0],) + tuple(map(tuple, l[1:5])) + tuple(l[5:])
                  for l in workers[0].call("layers")]
        load = [load_average()]
        rows = []
        for i, layer in enumerate(layers):
            for p in passes(layer):
                impls = [w.call("impl", i=i, pass_=p) for w in workers]
                rounds = interleave(workers, "timed", args.pairs, i=i, pass_=p, reps=args.reps)
                ratio = spread([b / a for a, b in rounds])
                t = [spread([r[j] for r in rounds])["median"] for j in range(2)]
                rows.append((layer, p, t, ratio, impls))
                print(f"{describe(layer)[0]:28s} {p:11s} {t[0] * 1e3:8.2f} ms {t[1] * 1e3:8.2f} ms "
                      f"{ratio['median']:.2f} [{ratio['min']:.2f}-{ratio['max']:.2f}] {impls}",
                      file=sys.stderr, flush=True)
        load.append(load_average())
    finally:
        for w in workers:
            w.close()
    return versions, rows, load


def report(args, versions, rows, load):
    """The markdown table of ``measure``'s rows and the totals over the model's calls."""
    lines = [f"oneDNN {versions[0]} (Jittor's) and {versions[1]} (PyPI onednn-cpu-gomp), "
             f"config {args.config}, {args.threads} threads, {args.clock} time, {args.pairs} "
             f"interleaved pairs "
             f"of the fastest of {args.reps} calls (1-min load average "
             f"{min(load):.1f}-{max(load):.1f}). Ratio = {versions[1]} / {versions[0]} per "
             f"pair: median [range]. The 'matmul' rows are the 1x1x1 layers' matrix product, "
             f"{versions[0]}'s sgemm on both sides (a control: its ratio is the noise), to set "
             f"against the oneDNN 1x1 convolution of the 'fwd' row above it.",
             "",
             f"| layer | shape (in->out, kernel, stride, on N x D x H x W) | pass | "
             f"{versions[0]} ms | {versions[1]} ms | ratio | kernel {versions[0]} / {versions[1]} |",
             "|---|---|---|---|---|---|---|"]
    totals = collections.defaultdict(lambda: [0.0, 0.0])
    for layer, p, t, ratio, impls in rows:
        name, shape = describe(layer)
        lines.append(f"| {name} | {shape} | {p} | {t[0] * 1e3:.2f} | {t[1] * 1e3:.2f} | "
                     f"{ratio['median']:.2f} [{ratio['min']:.2f}-{ratio['max']:.2f}] | "
                     f"{impls[0]} / {impls[1]} |")
        group = ("audio " if layer[5] else "backbone ") + p
        for j in range(2):
            totals[group][j] += t[j] * layer[6]
    lines += ["", "Totals over the model's calls (layer time x number of such layers):", ""]
    for group, (a, b) in totals.items():
        lines.append(f"- {group}: {a * 1e3:.1f} ms ({versions[0]}) vs {b * 1e3:.1f} ms "
                     f"({versions[1]}), {b / a:.2f}")
    return "\n".join(lines)


def main():
    args = parse_args()
    if args.worker:
        return worker(args)
    text = report(args, *measure(args))
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
