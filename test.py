"""Evaluate a VAANet checkpoint on the test split (the annotation's "validation" subset).

Usage (from the repository root)::

    python test.py --resume_path results/demo/save_10.npz
    python test.py --resume_path results/demo/save_10.npz --root_path demo/data --out eval/
    python test.py --resume_path vaanet_ve8.pth --root_path data          # release file
    python test.py --resume_path vaanet_ek6.pth --dataset ek6 --root_path data_ek6

Every option of training (``opts.py``) is accepted; test.py adds ``--out DIR`` and
``--no_progress``.

Model configuration: a checkpoint of this project (``.npz`` from ``save_checkpoint``)
carries its training options in ``meta["opts"]``; the model (dataset, n_classes,
resnet_depth, seq_len, snippet_duration, sample_size, audio sizes, fps), the loss and the
data location (root_path and the dataset paths, result_path, expr_name) come from there,
so no other flag is needed. Flags given explicitly override them. A release ``.pth`` has
no options: the configuration comes from the flags, whose defaults are the release's
(ResNet-101, 12 snippets of 16 frames, 112 x 112, VE-8).

Evaluation is deterministic (centre temporal crops, the ``val`` spatial transform, eval-mode
BatchNorm): two runs give identical numbers. Writes into ``--out`` (default
``<result_path>/<expr_name or checkpoint stem>/test/``):

- ``predictions.csv``: video, true class, predicted class, one probability column per class;
- ``report.json``: accuracy, per-class accuracy, polarity accuracy, loss, confusion matrix;
- ``confusion.png``: the confusion matrix.

A missing checkpoint or dataset prints where it looked and exits with status 2.
"""
import argparse
import os
import sys
import warnings

# librosa (imported after Jittor) makes NumPy warn about subnormals: harmless noise.
warnings.filterwarnings("ignore", message="The value of the smallest subnormal")

#: Keys copied from a checkpoint's meta["opts"] unless given on the command line.
CONFIG_KEYS = ("dataset", "n_classes", "resnet_depth", "seq_len", "snippet_duration",
               "sample_size", "audio_embed_size", "audio_n_segments", "fps",
               "loss_func", "lambda_0", "root_path", "result_path", "expr_name")
PATH_KEYS = ("video_path", "audio_path", "annotation_path")

PREPARE_HINT = ("  Make the demo data with `make demo`, or prepare a dataset with\n"
                "  `python tools/prepare_dataset.py --src RAW --dst ROOT` and pass --root_path ROOT.")


class UsageError(Exception):
    """A problem reported in a few lines and exit status 2 (no traceback)."""


def build_parser():
    from opts import build_parser as opts_parser
    p = opts_parser()
    p.prog = "test.py"
    p.description = ("Evaluate a VAANet checkpoint (this project's .npz or a release .pth) on "
                     "the test split; writes predictions.csv, report.json and confusion.png.")
    p.add_argument("--out", default=None,
                   help="output folder (default: <result_path>/<expr_name or checkpoint stem>/test)")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    return p


def explicit_options(argv):
    """The dests the user set on the command line (a parser whose defaults are suppressed)."""
    q = build_parser()
    for action in q._actions:
        action.default = argparse.SUPPRESS
    ns, _ = q.parse_known_args(argv)
    return set(vars(ns))


def _meta_path(value, meta_root):
    """A dataset path from training options, usable without re-joining it to a root.

    The options may have been stored resolved (``root/VideoEmotion8--imgs``) or not
    (``VideoEmotion8--imgs``); a resolved relative one is made absolute."""
    if os.path.isabs(value):
        return value
    if meta_root and os.path.normpath(value).startswith(os.path.normpath(meta_root) + os.sep):
        return os.path.abspath(value)
    return value


def resolve_options(argv=None):
    """Parse ``argv``; returns ``(opt, checkpoint dict)`` with the checkpoint's options merged."""
    from opts import finalize_opts
    from core.checkpoint import CheckpointError, read_checkpoint_file
    from core.evaluate import checkpoint_opts

    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    opt = parser.parse_args(argv)
    explicit = explicit_options(argv)
    if not opt.resume_path:
        raise UsageError("test.py: no checkpoint given: pass --resume_path CKPT "
                         "(this project's .npz or a release .pth)")
    if not os.path.isfile(opt.resume_path):
        raise UsageError(f"test.py: checkpoint not found: {os.path.abspath(opt.resume_path)}\n"
                         "  Train one with `python main.py` (or `make demo`), or pass the path "
                         "of a release .pth.")
    try:
        ckpt = read_checkpoint_file(opt.resume_path)
    except (CheckpointError, OSError) as e:
        raise UsageError(f"test.py: cannot read checkpoint {opt.resume_path}: {e}")
    meta_opts = checkpoint_opts(ckpt.get("meta"))
    for key in CONFIG_KEYS:
        if key not in explicit and meta_opts.get(key) is not None and hasattr(opt, key):
            setattr(opt, key, meta_opts[key])
    if "root_path" not in explicit and "dataset" not in explicit:
        for key in PATH_KEYS:
            if key not in explicit and meta_opts.get(key):
                setattr(opt, key, _meta_path(str(meta_opts[key]), meta_opts.get("root_path")))
    return finalize_opts(opt), ckpt


def check_dataset(opt):
    where = (f"  (root_path={opt.root_path}, annotation_path={opt.annotation_path}, "
             f"video_path={opt.video_path}, audio_path={opt.audio_path})")
    if not os.path.isfile(opt.annotation_path):
        raise UsageError(f"test.py: dataset not found: no annotation file "
                         f"{os.path.abspath(opt.annotation_path)}\n{where}\n{PREPARE_HINT}")
    for key in ("video_path", "audio_path"):
        path = getattr(opt, key)
        if not os.path.isdir(path):
            raise UsageError(f"test.py: dataset incomplete: {key} folder "
                             f"{os.path.abspath(path)} does not exist\n{where}\n{PREPARE_HINT}")


def model_config(opt):
    from core.evaluate import MODEL_KEYS
    return {k: getattr(opt, k) for k in MODEL_KEYS}


def default_out_dir(opt):
    stem = os.path.splitext(os.path.basename(opt.resume_path))[0]
    return os.path.join(opt.result_path, opt.expr_name or stem, "test")


def run(argv=None):
    opt, ckpt = resolve_options(argv)
    check_dataset(opt)

    from core.jittor_setup import jt  # noqa: F401  (configures Jittor first)
    from core.checkpoint import CheckpointError, load_weights
    from core.dataset import get_validation_set, make_loader
    from core.evaluate import build_model, describe_config, evaluate, json_safe
    from core.distributed import is_main_process
    from core.loss import get_loss
    from core.report import Report
    from datasets.ve8 import DatasetError

    try:
        val = get_validation_set(opt)
    except DatasetError as e:
        raise UsageError(f"test.py: dataset problem: {e}\n{PREPARE_HINT}")
    if val.n_samples == 0:
        raise UsageError(f"test.py: the 'validation' subset of {opt.annotation_path} has no usable "
                         f"videos\n{PREPARE_HINT}")
    if len(val.labels) != opt.n_classes:
        raise UsageError(f"test.py: {opt.annotation_path} has {len(val.labels)} classes, the model "
                         f"{opt.n_classes} (--n_classes / --dataset)")
    config = model_config(opt)
    model = build_model(config)
    try:
        load_weights(model, ckpt["state_dict"])
    except CheckpointError as e:
        msg = str(e)
        if len(msg) > 600:
            msg = msg[:600] + " ..."
        raise UsageError(f"test.py: the checkpoint does not fit the model ({describe_config(config)}): "
                         f"{msg}\n  Pass the flags the checkpoint was trained with "
                         f"(--resnet_depth, --seq_len, --snippet_duration, --sample_size, --n_classes).")
    model.eval()
    make_loader(val, opt, shuffle=False)
    criterion = get_loss(opt)
    main_rank = is_main_process()  # under mpirun every rank evaluates its share; rank 0 writes
    result = evaluate(model, val, criterion=criterion, desc="test",
                      progress=not opt.no_progress and main_rank)
    meta = ckpt.get("meta") or {}
    info = {"checkpoint": os.path.abspath(opt.resume_path),
            "checkpoint_epoch": json_safe(meta.get("epoch")),
            "split": "validation",
            "annotation_path": os.path.abspath(opt.annotation_path),
            "config": {k: json_safe(v) for k, v in config.items()},
            "loss_func": opt.loss_func}
    report = Report(result, val.labels, dataset=opt.dataset, info=info)
    if not main_rank:
        return report
    out = opt.out or default_out_dir(opt)
    os.makedirs(out, exist_ok=True)
    report.print_report()
    paths = [report.write_predictions_csv(os.path.join(out, "predictions.csv")),
             report.write_report_json(os.path.join(out, "report.json")),
             report.plot_confusion(os.path.join(out, "confusion.png"))]
    print("wrote " + ", ".join(paths))
    return report


def main(argv=None):
    try:
        run(argv)
    except UsageError as e:
        print(str(e), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    from core import entry
    sys.exit(entry.run(main))
