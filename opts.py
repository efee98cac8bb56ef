"""Command-line options, with the release's flag names and defaults.

    python opts.py --dataset ek6 --root_path data_ek6      # prints the options it would use

``parse_opts(argv=None)`` parses ``argv`` when given (a list of strings), else
``sys.argv[1:]``, and returns an ``argparse.Namespace``; it is
``finalize_opts(build_parser().parse_args(argv))``. The parsed options, before
``finalize_opts``, are what a checkpoint stores (``model.py``), so that a checkpoint can be
evaluated against another ``--root_path``. ``finalize_opts`` returns a new Namespace in which:

- ``--dataset`` fills the defaults of ``--video_path``, ``--audio_path``,
  ``--annotation_path`` and ``--n_classes`` from the dataset table
  (``datasets/catalog.py``); values given explicitly are kept. A ``custom`` dataset's
  number of classes stays None: main.py takes it from the annotation, test.py and
  predict.py from the checkpoint;
- ``video_path``, ``audio_path``, ``annotation_path`` and ``audio_cache`` that are
  relative are joined to ``--root_path``; absolute ones are kept;
- ``audio_cache`` is ``None`` when disabled (``--no_audio_cache`` or ``--audio_cache ''``);
- ``class_names`` and ``positive_classes`` are the table's classes of the dataset (None
  for a custom dataset); main.py and test.py replace them with those of the annotation.

The flags come in three groups, so that another script can take one group with the same
names, help and defaults: ``add_model_options`` (what defines the network and its
samples; ``model.py`` reads the release's defaults from it), ``add_data_options`` and
``add_training_options``. This module does not import Jittor.
"""
import argparse
import os

from datasets.catalog import DATASETS, classes_of_dataset, number_of_classes

DEFAULT_AUDIO_CACHE = "mfcc_cache"

#: The options naming a place in the prepared dataset, relative to --root_path unless absolute.
DATASET_PATHS = ("video_path", "audio_path", "annotation_path", "audio_cache")


def _default_threads():
    return max(1, min(4, os.cpu_count() or 1))


def _each(attr):
    return " / ".join(getattr(f, attr) for f in DATASETS.values())


def add_model_options(p):
    """The dataset (its classes) and the options that shape the network and its input."""
    a = p.add_argument
    a("--dataset", default="ve8", choices=sorted(DATASETS),
      help="dataset: " + ", ".join(f"{k} ({f.title})" for k, f in DATASETS.items())
           + "; sets the default paths (and the classes, which a custom dataset's "
             "annotation names)")
    a("--n_classes", type=int, default=None,
      help="number of classes (default: the annotation's in training, the checkpoint's in "
           "evaluation and prediction)")
    a("--fps", type=int, default=30, help="frame rate to sample at; every 30//fps-th frame is used")
    a("--snippet_duration", type=int, default=16, help="frames per snippet")
    a("--sample_size", type=int, default=112, help="height and width of the frames fed to the model")
    a("--seq_len", type=int, default=12, help="number of snippets (temporal segments) per video")
    a("--audio_embed_size", type=int, default=256, help="size of the audio embedding")
    a("--audio_n_segments", type=int, default=16, help="number of audio segments")
    a("--resnet_depth", type=int, default=101, help="depth of the 3D ResNet visual backbone")


def add_data_options(p):
    a = p.add_argument
    a("--root_path", default="data", help="root folder of the prepared dataset")
    a("--video_path", default=None,
      help=f"frame folder, relative to root_path (default {_each('frames_folder')})")
    a("--audio_path", default=None,
      help=f"mp3 folder, relative to root_path (default {_each('audio_folder')})")
    a("--annotation_path", default=None,
      help="annotation json, relative to root_path (default "
           + " / ".join(f.annotation_file(1) for f in DATASETS.values()) + ")")
    a("--audio_cache", default=DEFAULT_AUDIO_CACHE,
      help="folder of the on-disk MFCC cache, relative to root_path; '' disables it")
    a("--no_audio_cache", action="store_true", help="do not cache MFCC features on disk")
    a("--result_path", default="results", help="folder for checkpoints and logs")
    a("--expr_name", default="", help="experiment name (a sub-folder of result_path when given)")


def add_training_options(p):
    a = p.add_argument
    a("--resnet101_pretrained", default="", help="path of pretrained 3D ResNet-101 weights ('' for none)")
    a("--audio_pretrained", default="", help="path of pretrained audio-stream weights ('' for none)")
    a("--loss_func", default="pcce_ve8", choices=["pcce_ve8", "ce"],
      help="loss: pcce_ve8 (polarity-consistent cross-entropy) or ce (plain cross-entropy)")
    a("--lambda_0", type=float, default=0.5, help="PCCE extra weight for polarity-inconsistent predictions")
    a("--learning_rate", type=float, default=2e-4, help="Adam learning rate")
    a("--weight_decay", type=float, default=0.0, help="Adam weight decay")
    a("--batch_size", type=int, default=32, help="batch size")
    a("--n_epochs", type=int, default=100, help="number of epochs")
    a("--begin_epoch", type=int, default=1, help="first epoch number (set by --resume_path when resuming)")
    a("--resume_path", default="", help="checkpoint (save_<epoch>.pth) to resume from ('' for none)")
    a("--dl", "--drop_last", dest="dl", action="store_true", help="drop the last incomplete training batch")
    a("--n_threads", type=int, default=_default_threads(), help="number of data-loading worker processes")
    a("--manual_seed", type=int, default=1, help="random seed (sampling, augmentation, shuffling, init)")
    a("--no_cuda", action="store_true", help="run on the CPU even when a GPU is available")
    board = p.add_mutually_exclusive_group()
    board.add_argument("--tensorboard", dest="tensorboard", action="store_const", const=True,
                       default=None, help="write TensorBoard event files into the results folder "
                       "(default: when tensorboardX or torch.utils.tensorboard is installed)")
    board.add_argument("--no_tensorboard", dest="tensorboard", action="store_const", const=False,
                       help="no TensorBoard event files")
    a("--debug", action="store_true",
      help="when a sample cannot be read, also show where (the loader's traceback)")


def build_parser():
    p = argparse.ArgumentParser(description="VAANet (Jittor port): visual-audio attention network "
                                            "for video emotion recognition")
    add_data_options(p)
    add_model_options(p)
    add_training_options(p)
    return p


def defaults_of(*groups):
    """``{option: default}`` of the options that ``groups`` (``add_*_options``) declare."""
    p = argparse.ArgumentParser(add_help=False)
    for add in groups:
        add(p)
    return vars(p.parse_args([]))


def _resolve(root, path):
    if path is None or path == "" or os.path.isabs(path):
        return path
    return os.path.join(root, path)


def finalize_opts(args):
    """A new Namespace: ``args`` with the dataset's defaults filled in and paths joined to
    root_path (see the module docstring); ``args`` itself is left as parsed."""
    opt = argparse.Namespace(**vars(args))
    facts = DATASETS.get(opt.dataset)
    if facts is not None:
        for key, value in (("video_path", facts.frames_folder), ("audio_path", facts.audio_folder),
                           ("annotation_path", facts.annotation_file(1))):
            if getattr(opt, key) is None:
                setattr(opt, key, value)
    if opt.n_classes is None:
        opt.n_classes = number_of_classes(opt.dataset)
    if opt.no_audio_cache or not opt.audio_cache:
        opt.audio_cache = None
    for key in DATASET_PATHS:
        setattr(opt, key, _resolve(opt.root_path, getattr(opt, key)))
    set_classes(opt, None if opt.n_classes is None else classes_of_dataset(opt.dataset, opt.n_classes))
    return opt


def set_classes(opt, classes):
    """Put a ``datasets.catalog.Classes`` on ``opt`` as plain lists (``class_names``,
    ``positive_classes``), the form the loss and the report read; and its number of
    classes when ``opt.n_classes`` is unset. ``classes`` None: not known yet."""
    if classes is None:
        opt.class_names = opt.positive_classes = None
        return opt
    if opt.n_classes is None:
        opt.n_classes = len(classes)
    opt.class_names = list(classes.names)
    opt.positive_classes = None if classes.positive is None else list(classes.positive)
    return opt


def parse_opts(argv=None):
    """Parse ``argv`` (list of strings; ``None`` means ``sys.argv[1:]``) into a Namespace."""
    return finalize_opts(build_parser().parse_args(argv))


if __name__ == "__main__":
    for k, v in sorted(vars(parse_opts()).items()):
        print(f"{k}: {v}")
