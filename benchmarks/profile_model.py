"""Where the time goes: an op profiler over one eval forward or training step of this port,
the PyTorch re-implementation or the release's own model.

Run (from the repository root)::

    .venv/bin/python benchmarks/profile_model.py --mode eval          # config 'bench'
    .venv/bin/python benchmarks/profile_model.py --mode train --top 30
    .venv/bin/python benchmarks/profile_model.py --mode train --release_src ../VAANet --threads 2
    .venv/bin/python benchmarks/profile_model.py --mode eval --framework torch

Runs ``bench_model.py``'s iteration (same model, data and config) twice untimed, then once
under the profiler, and prints the ops that took the most time.

PyTorch's sides (``--framework torch``, ``--release_src``): ``torch.profiler`` over the
iteration, one row per ATen op (``aten::mkldnn_convolution``...) with its self time (the
time in the op less the ops it calls); ``--shapes`` splits the rows by the shapes of the
op's inputs, which tells the convolution layers apart.

The port: ``jt.profile_scope``, grouped by kind:
the op's name for the custom and library ops (``onednn_conv3d``, ``mkl_matmul``,
``code`` for the OpenMP kernels of ``models/kernels``...), and for Jittor's fused
element-wise and reduction kernels the ops they were fused from. The profiler times each
op alone (the synchronisation it adds costs a few percent), which is what this is for: to
see which kernels to make faster, not to time the whole.
"""
import argparse
import collections
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.bench_model import (  # noqa: E402
    CONFIGS, FRAMEWORKS, check_release, jittor_step, torch_step)


def kind(name):
    """A readable kind of op from the profiler's jit key: ``onednn_conv3d``,
    ``mkl_matmul[N,T]``, ``code[in3,out3]`` (an OpenMP kernel of ``models/kernels`` with its
numbers of inputs and outputs), or for a fused
    kernel the ops it was fused from, e.g. ``fused[binary.add,binary.multiply,reindex]``."""
    if name.startswith("«opkey"):
        ops = set(re.findall(r"«opkey\d+:(\w+)", name)) - {"array", "broadcast_to"}
        ops = {o for o in ops if o not in ("unary", "binary", "reduce")}
        ops |= set(re.findall(r"«OP\d*:(\w+)", name)) | set(re.findall(r"«op:(\w+)", name))
        return "fused[" + ",".join(sorted(ops)) + "]"
    base = name.split("«")[0]
    if base == "code":  # which kernel: by its numbers of inputs and outputs
        sizes = re.findall(r"«(IN|OUT)_SIZE:(\d+)", name)
        return "code[" + ",".join(f"{k.lower()}{v}" for k, v in sizes) + "]"
    if base == "mkl_matmul":
        return "mkl_matmul[" + ",".join(re.findall(r"«Trans_[ab]:(\w)", name)) + "]"
    return base


def jittor_profile(cfg, mode):
    """``(time in ns, calls)`` per kind of op of the port's iteration."""
    from core.jittor_setup import jt
    step = jittor_step(cfg, mode).step
    step()
    step()
    with jt.profile_scope() as report:
        step()
    header, rows = report[0], report[1:]
    col = {name: i for i, name in enumerate(header)}
    total, count = collections.Counter(), collections.Counter()
    for row in rows:
        k = kind(row[col["Name"]])
        total[k] += float(row[col["TotalTime"]])
        count[k] += int(row[col["Count"]])
    return total, count


def torch_profile(cfg, mode, threads, release_src, shapes):
    """``(time in ns, calls)`` per ATen op (its self time: without the ops it calls) of the
    re-implementation's or the release's iteration; with ``shapes``, per op and shapes of
    its inputs."""
    import torch.profiler
    step = torch_step(cfg, mode, threads, release_src).step
    step()
    step()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                record_shapes=shapes) as prof:
        step()
    total, count = collections.Counter(), collections.Counter()
    for event in prof.key_averages(group_by_input_shape=shapes):
        k = f"{event.key} {event.input_shapes}" if shapes else event.key
        total[k] += event.self_cpu_time_total * 1e3
        count[k] += event.count
    return total, count


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--framework", choices=FRAMEWORKS, default="jittor")
    parser.add_argument("--release_src", metavar="DIR",
                        help="profile the release's own model, from its checkout in DIR")
    parser.add_argument("--mode", choices=("eval", "train"), default="eval")
    parser.add_argument("--config", choices=sorted(CONFIGS), default="bench")
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="PyTorch's threads (Jittor's: OMP_NUM_THREADS)")
    parser.add_argument("--shapes", action="store_true",
                        help="PyTorch's sides: a row per op and input shapes (per layer shape)")
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()

    cfg = CONFIGS[args.config]
    if args.release_src:
        args.release_python = None  # profiled in this process: this Python needs torchvision
        check_release(parser, args)
        total, count = torch_profile(cfg, args.mode, args.threads, args.release_src, args.shapes)
    elif args.framework == "torch":
        total, count = torch_profile(cfg, args.mode, args.threads, None, args.shapes)
    else:
        total, count = jittor_profile(cfg, args.mode)
    grand = sum(total.values())
    what = "release" if args.release_src else args.framework
    print(f"{what} {args.mode} ({args.config}): {grand / 1e9:.3f} s in {sum(count.values())} ops")
    width = 110 if args.shapes else 60
    print(f"{'op kind':{width}s} {'calls':>6s} {'time':>9s} {'share':>6s}")
    for k, t in total.most_common(args.top):
        print(f"{k[:width]:{width}s} {count[k]:6d} {t / 1e9:8.3f}s {t / grand:6.1%}")


if __name__ == "__main__":
    main()
