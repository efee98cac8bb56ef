"""Where this port's time goes: Jittor's op profiler over one eval forward or training step.

Run (from the repository root)::

    .venv/bin/python benchmarks/profile_model.py --mode eval          # config 'bench'
    .venv/bin/python benchmarks/profile_model.py --mode train --top 30

Runs ``bench_model.py``'s iteration (same model, data and config) twice untimed, then once
under ``jt.profile_scope``, and prints the ops that took the most time, grouped by kind:
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

from benchmarks.bench_model import CONFIGS, jittor_step  # noqa: E402


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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=("eval", "train"), default="eval")
    parser.add_argument("--config", choices=sorted(CONFIGS), default="bench")
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()

    from core.jittor_setup import jt
    step, _ = jittor_step(CONFIGS[args.config], args.mode)
    step()
    step()
    with jt.profile_scope() as report:
        step()
    header, rows = report[0], report[1:]
    col = {name: i for i, name in enumerate(header)}
    total = collections.Counter()
    count = collections.Counter()
    for row in rows:
        k = kind(row[col["Name"]])
        total[k] += float(row[col["TotalTime"]])
        count[k] += int(row[col["Count"]])
    grand = sum(total.values())
    print(f"{args.mode} ({args.config}): {grand / 1e9:.3f} s in {sum(count.values())} ops")
    print(f"{'op kind':60s} {'calls':>6s} {'time':>9s} {'share':>6s}")
    for k, t in total.most_common(args.top):
        print(f"{k[:60]:60s} {count[k]:6d} {t / 1e9:8.3f}s {t / grand:6.1%}")


if __name__ == "__main__":
    main()
