"""Evaluate a VAANet checkpoint on the test split (the annotation's "validation" subset).

Usage (from the repository root)::

    python test.py --resume_path results/demo/save_10.npz
    python test.py --resume_path results/demo/save_10.npz --root_path demo/data --out eval/
    python test.py --resume_path vaanet_ve8.pth --root_path data          # release file
    python test.py --resume_path vaanet_ek6.pth --dataset ek6 --root_path data_ek6

    python test.py --resume_path results/demo/best.npz --features test_features.npz
    python test.py --resume_path results/demo/best.npz --html eval_page/   # open eval_page/index.html

Every option of training (``opts.py``) is accepted; test.py adds ``--out DIR``,
``--features NPZ``, ``--html DIR`` and ``--no_progress``.

Model configuration: a checkpoint of this project (``.npz``) carries the options it was
trained with and its classes (``model.py``); the model, the loss and the data location
(root_path and the dataset paths, result_path, expr_name) come from there, so no other
flag is needed. Flags given explicitly override them (``--root_path`` alone moves the
dataset). A release ``.pth`` has no options: the configuration comes from the flags, whose
defaults are the release's (ResNet-101, 12 snippets of 16 frames, 112 x 112, VE-8).

Evaluation is deterministic (centre temporal crops, the ``val`` spatial transform, eval-mode
BatchNorm): two runs give identical numbers. Writes into ``--out`` (default
``<result_path>/<expr_name or checkpoint stem>/test/``):

- ``predictions.csv``: video, true class, predicted class, one probability column per class;
- ``report.json``: accuracy, per-class accuracy, polarity accuracy, loss, confusion matrix;
- ``confusion.png``: the confusion matrix.

``--features NPZ`` also saves every video's fused vector (what the classifier sees), its
visual and audio parts and the attention maps, with the true classes and the class names
(keys and shapes: ``core/features.py``). ``--html DIR`` writes an error-analysis page,
``DIR/index.html`` (offline; ``core/error_page.py``): the report, the confusion matrix
linked to its videos, and one card per video, errors first, with its class probabilities
and its key frames with their spatial, temporal and audio attention.

The classes are the checkpoint's; a test split whose annotation has other classes (another
number of them, or other names) is refused before anything runs. A missing checkpoint or
dataset prints where it looked and exits with status 2; a sample that cannot be read (a
damaged frame or mp3) is reported in a few lines naming the video, the file and the cause,
with exit status 1 (``--debug`` adds the traceback).
"""
import os
import sys

from core import entry
from core.entry import UsageError, launched_by_mpirun

def build_parser():
    from opts import build_parser as opts_parser
    p = opts_parser()
    p.prog = "test.py"
    p.description = ("Evaluate a VAANet checkpoint (this project's .npz or a release .pth) on "
                     "the test split; writes predictions.csv, report.json and confusion.png.")
    p.add_argument("--out", default=None,
                   help="output folder (default: <result_path>/<expr_name or checkpoint stem>/test)")
    p.add_argument("--features", default=None, metavar="NPZ",
                   help="also save every video's fused vector, its visual and audio parts and "
                        "the attention maps to this .npz (see core/features.py)")
    p.add_argument("--html", default=None, metavar="DIR",
                   help="also write an error-analysis page, DIR/index.html: report, confusion "
                        "matrix, one card per video with its attention (errors first)")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    return p


def evaluation_options():
    """What test.py takes from a checkpoint: the model, the data and the loss options."""
    from opts import add_data_options, add_model_options, defaults_of
    return tuple(defaults_of(add_model_options, add_data_options)) + ("loss_func", "lambda_0")


def resolve_options(argv=None):
    """Parse ``argv``; returns ``(opt, checkpoint dict)``: the checkpoint's options are the
    parser's defaults, so that the flags given explicitly win."""
    from opts import finalize_opts
    from model import parse_with_checkpoint

    args, ckpt = parse_with_checkpoint(build_parser(), argv, "resume_path", evaluation_options())
    return finalize_opts(args), ckpt


def check_dataset(opt, ckpt):
    """The annotation's classes, once the dataset's files and classes are known to suit the
    checkpoint (UsageError otherwise)."""
    from datasets.catalog import AnnotationError, dataset_classes
    from model import check_classes

    try:
        classes = dataset_classes(opt)
    except AnnotationError as e:
        raise UsageError(str(e)) from None
    check_classes(ckpt, opt.resume_path, classes, opt.annotation_path)
    return classes


def default_out_dir(opt):
    stem = os.path.splitext(os.path.basename(opt.resume_path))[0]
    return os.path.join(opt.result_path, opt.expr_name or stem, "test")


def load(opt, ckpt, classes):
    """``(test split as a loader, model, model configuration)``; UsageError when the data
    or the checkpoint cannot serve."""
    from core.checkpoint import CheckpointError
    from datasets.factory import get_validation_set, make_loader
    from datasets.ve8 import DatasetError
    from model import model_config, model_from_state_dict
    from opts import set_classes

    try:
        val = get_validation_set(opt)
    except DatasetError as e:
        raise UsageError(f"the dataset under {opt.root_path} is not usable:\n{e}") from None
    if val.n_samples == 0:
        raise UsageError(f"the dataset under {opt.root_path} is not usable: the 'validation' "
                         f"subset of {opt.annotation_path} has no videos")
    set_classes(opt, classes)
    config = model_config(opt)
    try:
        model = model_from_state_dict(ckpt["state_dict"], config)
    except CheckpointError as e:
        raise UsageError(str(e))
    return make_loader(val, opt, shuffle=False), model, config


def write_outputs(opt, report, result, classes):
    """predictions.csv, report.json and confusion.png into --out, --features and --html."""
    from core.error_page import write_error_page
    from core.features import FeatureTable

    out = opt.out or default_out_dir(opt)
    os.makedirs(out, exist_ok=True)
    report.print_report()
    paths = [report.write_predictions_csv(os.path.join(out, "predictions.csv")),
             report.write_report_json(os.path.join(out, "report.json")),
             report.plot_confusion(os.path.join(out, "confusion.png"))]
    if opt.features:
        table = FeatureTable(classes.names, classes.positive)
        table.add_batch(result.video_ids, result.targets, result.features)
        paths.append(table.save(opt.features))
    if opt.html:
        from datasets.audio import segment_seconds
        from models.resnet3d import output_grid
        paths.append(write_error_page(opt.html, report, result, output_grid(
            opt.snippet_duration, opt.sample_size), segment_seconds(opt.audio_n_segments)))
    print("wrote " + ", ".join(paths))


def run(argv=None):
    opt, ckpt = resolve_options(argv)
    classes = check_dataset(opt, ckpt)
    if (opt.features or opt.html) and launched_by_mpirun():
        raise UsageError("--features and --html run in one process: run without mpirun")

    entry.choose_device(opt.no_cuda)
    from core.jittor_setup import jt  # noqa: F401  (configures Jittor first)
    from core.checkpoint import trained_epochs
    from core.distributed import is_main_process
    from core.error_page import THUMBNAIL_PX
    from core.evaluate import evaluate, json_safe
    from core.loss import get_loss
    from core.report import Report
    from datasets.errors import SampleError, check_hint

    val, model, config = load(opt, ckpt, classes)
    main_rank = is_main_process()  # under mpirun every rank evaluates its share; rank 0 writes
    try:
        result = evaluate(model, val, criterion=get_loss(opt), desc="test",
                          progress=not opt.no_progress and main_rank,
                          features=bool(opt.features or opt.html),
                          key_frames=THUMBNAIL_PX if opt.html else 0)
    except SampleError as e:
        raise entry.unreadable_sample(
            e, opt.debug, ["test.py: cannot read a sample of the test split:"] + e.lines()
            + [check_hint(opt.root_path, opt.dataset)]) from None
    info = {"checkpoint": os.path.abspath(opt.resume_path),
            "checkpoint_epoch": trained_epochs(ckpt.get("meta") or {}),
            "split": "validation",
            "annotation_path": os.path.abspath(opt.annotation_path),
            "config": {k: json_safe(v) for k, v in config.items()},
            "loss_func": opt.loss_func}
    report = Report(result, classes, dataset=opt.dataset, info=info)
    if main_rank:
        write_outputs(opt, report, result, classes)
    return report


def main(argv=None):
    return entry.exit_status("test.py", run, argv)


if __name__ == "__main__":
    sys.exit(entry.run(main))
