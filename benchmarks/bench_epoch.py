"""Time one whole training epoch, data loading included, on a synthetic VE-8-sized dataset.

    python benchmarks/bench_epoch.py                       # 732 training videos, release config
    python benchmarks/bench_epoch.py --per_class_train 4 --seconds 2 --resnet_depth 10 \
        --seq_len 4 --snippet_duration 8 --batch_size 8   # a quick CPU check

The dataset is made once under ``benchmarks/out/epoch_<...>/`` with the demo generator
(``tools/make_demo_dataset.py``) and prepared with ``tools/prepare_dataset.py``; later runs
reuse it. The first pass over the data fills the MFCC cache, so the epoch is run twice and
both times are reported (cold and warm cache). Model flags are main.py's (``opts.py``).
"""
import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from datasets.catalog import DATASETS  # noqa: E402
from opts import parse_opts  # noqa: E402


def make_dataset(out, per_class_train, per_class_test, seconds):
    raw, data = os.path.join(out, "raw"), os.path.join(out, "data")
    if not os.path.exists(os.path.join(data, DATASETS["ve8"].annotation_file(1))):
        for cmd in (["tools/make_demo_dataset.py", "--dst", raw, "--per_class_train",
                     str(per_class_train), "--per_class_test", str(per_class_test),
                     "--seconds", str(seconds)],
                    ["tools/prepare_dataset.py", "--src", raw, "--dst", data,
                     "--split_dir", os.path.join(raw, "splits")]):
            subprocess.run([sys.executable] + cmd, cwd=ROOT, check=True)
    return data


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--per_class_train", type=int, default=92, help="training videos per class (92 x 8 ~ VE-8's 732)")
    p.add_argument("--per_class_test", type=int, default=2, help="test videos per class")
    p.add_argument("--seconds", type=float, default=107, help="video length (VE-8's average is ~107 s)")
    p.add_argument("--json", default="", help="also write the figures to this file")
    args, model_flags = p.parse_known_args()
    out = os.path.join(ROOT, "benchmarks", "out",
                       f"epoch_{args.per_class_train}x{args.per_class_test}_{args.seconds:g}s")
    data = make_dataset(out, args.per_class_train, args.per_class_test, args.seconds)
    opt = parse_opts(["--root_path", data] + model_flags)

    from core.jittor_setup import jt
    from core.loss import get_loss
    from core.optimizer import release_adam
    from core.train import train_epoch
    from datasets.factory import get_training_set, make_loader
    from model import generate_model

    jt.set_global_seed(opt.manual_seed)
    train_set = make_loader(get_training_set(opt), opt, shuffle=True)
    model = generate_model(opt)
    optimizer = release_adam(model, opt.learning_rate)
    criterion = get_loss(opt)
    results = {"videos": train_set.n_samples, "batch_size": opt.batch_size,
               "seq_len": opt.seq_len, "snippet_duration": opt.snippet_duration,
               "sample_size": opt.sample_size, "resnet_depth": opt.resnet_depth,
               "n_threads": opt.n_threads, "use_cuda": int(jt.flags.use_cuda)}
    for epoch, name in ((1, "cold_cache"), (2, "warm_cache")):
        train_set.set_epoch(epoch)
        start = time.time()
        train_epoch(epoch, train_set, model, criterion, optimizer)
        results[f"{name}_s"] = time.time() - start
    print(f"one training epoch over {results['videos']} videos (batch {opt.batch_size}, "
          f"{opt.seq_len} x {opt.snippet_duration} x {opt.sample_size}^2, ResNet-{opt.resnet_depth}, "
          f"{'CUDA' if results['use_cuda'] else 'CPU'}): cold cache {results['cold_cache_s']:.1f} s, "
          f"warm cache {results['warm_cache_s']:.1f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
