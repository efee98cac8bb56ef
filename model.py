"""Model set-up: a VAANet from options or from a checkpoint, and its pretrained backbones.

    from model import generate_model, load_pretrained_model
    model = generate_model(opt)            # opts.parse_opts() options, or a dict of them
    load_pretrained_model(model, opt)      # --resnet101_pretrained, --audio_pretrained

main.py, test.py, predict.py and the benchmarks build their models here. This module is
the one place that knows

- which options define the network and its samples (``MODEL_OPTIONS``: the flags of
  ``opts.add_model_options``) and their release defaults (``release_defaults()``, read
  from that parser, not restated);
- what a checkpoint of this project stores about its model (``checkpoint_meta``): the
  options as parsed, before ``finalize_opts`` joined paths to ``--root_path``; the classes
  (``labels``, ``positive_classes``); the next epoch to run, as the release stores it.
  ``saved_options`` turns them back into parser defaults, over which the flags a user
  types still win (``parse_with_checkpoint``: test.py, predict.py); ``checkpoint_classes``
  reads the classes back (a release file's from its classifier's size), ``check_classes``
  refuses a checkpoint of other classes than a dataset's;
- how Hara et al.'s Kinetics 3D ResNet and torchvision's ImageNet ResNet-18 map onto the
  model (``load_pretrained_visual``, ``load_pretrained_audio``), by the names that the
  backbones give their children (``models/resnet3d.py``, ``models/resnet2d.py``).

Importing it does not start Jittor (only building a model does), so that the scripts can
read a checkpoint's options before they choose the device.
"""
from core.checkpoint import CheckpointError, load_renamed, load_weights
from datasets.catalog import classes_of_dataset, classes_of_record
from opts import DATASET_PATHS, add_model_options, defaults_of


def release_defaults():
    """The release's model configuration: ``{option: default}`` as ``opts.py`` declares it."""
    return defaults_of(add_model_options)


#: The options that define the network and its samples (and the dataset, whose classes
#: the outputs are): the flags of ``opts.add_model_options``.
MODEL_OPTIONS = tuple(release_defaults())

#: The VAANet arguments among them.
NETWORK_OPTIONS = ("snippet_duration", "sample_size", "n_classes", "seq_len",
                   "audio_embed_size", "audio_n_segments", "resnet_depth")

#: Version of ``checkpoint_meta``'s layout; version 1 (no ``meta_version``) stored the
#: options after their paths had been joined to root_path.
META_VERSION = 2


def model_config(options):
    """``{option: value}`` of ``MODEL_OPTIONS`` from a Namespace or a dict; ``n_classes``
    None becomes the dataset's number of classes."""
    get = options.get if isinstance(options, dict) else lambda k: getattr(options, k, None)
    config = {k: get(k) for k in MODEL_OPTIONS}
    if config["n_classes"] is None:
        config["n_classes"] = len(classes_of_dataset(config["dataset"]))
    return config


def describe(config):
    """``"dataset ve8, n_classes 8, fps 30, ..."`` for messages."""
    return ", ".join(f"{k} {config[k]}" for k in MODEL_OPTIONS if k in config)


def generate_model(options):
    """A VAANet configured by ``options``: the command-line options (a Namespace) or a
    dict holding the same keys (``model_config``)."""
    from models.vaanet import VAANet  # starts Jittor: the options above must not need it

    config = model_config(options)
    return VAANet(**{k: int(config[k]) for k in NETWORK_OPTIONS})


# --------------------------------------------------------------------------------------
# Pretrained backbones

def _load_backbone(model, path, attr, unused, what):
    """Load ``path`` into ``model.<attr>``: the file's key ``<child name>.<rest>`` goes to
    ``<attr>.<child index>.<rest>``; its children named in ``unused`` are dropped and their
    counterparts in the model (if any) keep their weights; every other key of the
    backbone must be filled."""
    names = getattr(model, attr).child_names
    prefix_map = {f"{name}.": f"{attr}.{i}." for i, name in enumerate(names) if name not in unused}
    kept = tuple(f"{attr}.{names.index(name)}." for name in unused if name in names)
    required = [k for k in model.state_dict() if k.startswith(attr + ".") and not k.startswith(kept)]
    dropped = tuple(f"{name}." for name in unused)
    return load_renamed(model, path, prefix_map, dropped, required, what)


def load_pretrained_visual(model, path):
    """Fill the 3D ResNet (``model.resnet``) from Hara et al.'s Kinetics checkpoint
    (``module.conv1``, ``bn1``, ``layer1..4``; its 400-class ``fc`` is dropped). Every
    backbone key must be filled with the right shape, else WeightsMismatchError."""
    return _load_backbone(model, path, "resnet", ("fc",), "Kinetics 3D ResNet")


def load_pretrained_audio(model, path):
    """Fill the audio ResNet-18 (``model.a_resnet``) from torchvision's ImageNet
    ResNet-18: everything but its ``conv1`` (3 -> 64 channels; the model's takes 1 channel
    and keeps its own weights) and its ``fc``."""
    return _load_backbone(model, path, "a_resnet", ("conv1", "fc"), "ImageNet ResNet-18")


def load_pretrained_model(model, opt):
    """Load the pretrained backbones that ``opt`` names (``--resnet101_pretrained``,
    ``--audio_pretrained``; '' for none)."""
    if opt.resnet101_pretrained:
        load_pretrained_visual(model, opt.resnet101_pretrained)
    if opt.audio_pretrained:
        load_pretrained_audio(model, opt.audio_pretrained)
    return model


# --------------------------------------------------------------------------------------
# Checkpoints

def checkpoint_meta(epoch, args, classes, **extra):
    """The ``meta`` of the checkpoint saved after ``epoch``: ``args`` are the options as
    parsed (``opts.build_parser().parse_args``, before ``finalize_opts``), ``classes`` a
    ``datasets.catalog.Classes``; ``extra`` (``best_acc``, ``val_acc``...) is kept as is."""
    meta = {"epoch": epoch + 1,  # the next epoch to run, as the release stores it
            "meta_version": META_VERSION, "opts": dict(vars(args))}
    meta.update(classes.to_json())
    meta.update(extra)
    return meta


def classifier_outputs(state_dict):
    """The number of classes a state dict's model outputs (rows of ``av_fc.weight``), or
    None when it holds no classifier."""
    for key, value in (state_dict or {}).items():
        if key == "av_fc.weight" or key.endswith(".av_fc.weight"):
            shape = getattr(value, "shape", ())
            return int(shape[0]) if len(shape) == 2 else None
    return None


def checkpoint_classes(ckpt, dataset=None):
    """The classes of a checkpoint (``read_checkpoint_file``'s dict): the names and
    polarity its meta stores; for a file that stores none (a release .pth), the table's
    classes of ``dataset`` when their number is its classifier's, else ``class_0 ...``."""
    return classes_of_record(ckpt.get("meta"), dataset, classifier_outputs(ckpt.get("state_dict")))


def saved_options(meta, keys, state_dict=None):
    """The options of ``keys`` that a checkpoint's meta stores, as parser defaults.

    Values of None are left out (the parser's own default applies), and so are the dataset
    paths of an older checkpoint, which stored them already joined to its root_path (the
    dataset's defaults under root_path apply). ``n_classes`` left unset by the options is
    the number of the checkpoint's classes, or of its classifier's outputs (``state_dict``,
    for a release checkpoint, which stores no options)."""
    meta = meta if isinstance(meta, dict) else {}
    saved = meta.get("opts") if isinstance(meta.get("opts"), dict) else {}
    joined = meta.get("meta_version", 1) < 2
    out = {}
    for k in keys:
        value = saved.get(k)
        if value is None or (joined and k in DATASET_PATHS):
            continue
        out[k] = value
    labels = meta.get("labels")
    if "n_classes" in keys and "n_classes" not in out:
        if isinstance(labels, (list, tuple)) and labels:
            out["n_classes"] = len(labels)
        elif classifier_outputs(state_dict) is not None:
            out["n_classes"] = classifier_outputs(state_dict)
    return out


def parse_with_checkpoint(parser, argv, dest, keys):
    """``(options, checkpoint dict)``: ``argv`` parsed with the options ``keys`` that the
    checkpoint named by ``--<dest>`` stores as the parser's defaults, so that flags given
    explicitly win (test.py, predict.py). A checkpoint not given, missing or unreadable is
    a ``core.entry.UsageError``."""
    import os
    from core.checkpoint import read_checkpoint_file
    from core.entry import UsageError

    path = getattr(parser.parse_known_args(argv)[0], dest)
    if not path:
        raise UsageError(f"no checkpoint given: pass --{dest} CKPT (this project's .npz or a "
                         "release .pth)")
    if not os.path.isfile(path):
        raise UsageError(f"checkpoint not found: {os.path.abspath(path)}\n  Train one with "
                         "`python main.py` (or `make demo`), or pass the path of a release .pth.")
    try:
        ckpt = read_checkpoint_file(path)
    except (CheckpointError, OSError) as e:
        raise UsageError(f"cannot read checkpoint {path}: {e}")
    parser.set_defaults(**saved_options(ckpt.get("meta"), keys, ckpt.get("state_dict")))
    return parser.parse_args(argv), ckpt


def check_classes(ckpt, path, classes, annotation):
    """Raise ``core.entry.UsageError`` when the checkpoint ``ckpt`` (read from ``path``)
    cannot be used with the annotation's ``classes`` (``core.classes.mismatch``)."""
    from core.classes import mismatch
    from core.entry import UsageError

    labelled = bool((ckpt.get("meta") or {}).get("labels"))
    problem = mismatch(checkpoint_classes(ckpt) if labelled else None,
                       classifier_outputs(ckpt.get("state_dict")), classes, path, annotation)
    if problem:
        raise UsageError(f"{problem}: use the checkpoint with the dataset it was trained on "
                         f"(--root_path, --dataset)")


def model_from_state_dict(state_dict, config):
    """A VAANet of ``config`` holding ``state_dict``, in eval mode. A checkpoint that does
    not fit raises CheckpointError naming the configuration and the flags to pass."""
    model = generate_model(config)
    try:
        load_weights(model, state_dict)
    except CheckpointError as e:
        msg = " ".join(str(e).split())  # one line
        if len(msg) > 400:
            msg = msg[:400] + " ..."
        raise CheckpointError(
            f"the checkpoint does not fit the model ({describe(model_config(config))}); pass the "
            f"flags it was trained with (--resnet_depth, --seq_len, --snippet_duration, "
            f"--sample_size, --n_classes): {msg}") from None
    return model.eval()
