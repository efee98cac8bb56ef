"""Command-line options, with the release's flag names and defaults (SPEC section 4).

``parse_opts(argv=None)`` parses ``argv`` when given (a list of strings), else
``sys.argv[1:]``, and returns an ``argparse.Namespace``. After parsing:

- ``--dataset ek6`` switches the defaults of ``--video_path``, ``--audio_path``,
  ``--annotation_path`` and ``--n_classes`` to the Ekman-6 ones (``Ekman6--imgs``,
  ``Ekman6--mp3``, ``ek6_01.json``, 6); values given explicitly are kept.
- ``video_path``, ``audio_path``, ``annotation_path`` and ``audio_cache`` that are
  relative are resolved against ``--root_path``; absolute ones are kept.
- ``audio_cache`` is ``None`` when disabled (``--no_audio_cache`` or ``--audio_cache ''``).

This module does not import Jittor (``--no_cuda`` is read from ``sys.argv`` by
``core.jittor_setup`` before Jittor starts).
"""
import argparse
import os

DATASET_DEFAULTS = {
    "ve8": {
        "video_path": "VideoEmotion8--imgs",
        "audio_path": "VideoEmotion8--mp3",
        "annotation_path": "ve8_01.json",
        "n_classes": 8,
    },
    "ek6": {
        "video_path": "Ekman6--imgs",
        "audio_path": "Ekman6--mp3",
        "annotation_path": "ek6_01.json",
        "n_classes": 6,
    },
}

DEFAULT_AUDIO_CACHE = "mfcc_cache"


def _default_threads():
    return max(1, min(4, os.cpu_count() or 1))


def build_parser():
    p = argparse.ArgumentParser(description="VAANet (Jittor port): visual-audio attention network "
                                            "for video emotion recognition")
    a = p.add_argument
    # data
    a("--dataset", default="ve8", choices=sorted(DATASET_DEFAULTS),
      help="dataset name: ve8 (VideoEmotion-8) or ek6 (Ekman-6); switches the path defaults")
    a("--root_path", default="data", help="root folder of the prepared dataset")
    a("--video_path", default=None,
      help="frame folder, relative to root_path (default VideoEmotion8--imgs / Ekman6--imgs)")
    a("--audio_path", default=None,
      help="mp3 folder, relative to root_path (default VideoEmotion8--mp3 / Ekman6--mp3)")
    a("--annotation_path", default=None,
      help="annotation json, relative to root_path (default ve8_01.json / ek6_01.json)")
    a("--audio_cache", default=DEFAULT_AUDIO_CACHE,
      help="folder of the on-disk MFCC cache, relative to root_path; '' disables it")
    a("--no_audio_cache", action="store_true", help="do not cache MFCC features on disk")
    a("--result_path", default="results", help="folder for checkpoints and logs")
    a("--expr_name", default="", help="experiment name (a sub-folder of result_path when given)")
    a("--n_classes", type=int, default=None, help="number of classes (default 8 for ve8, 6 for ek6)")
    # sample
    a("--fps", type=int, default=30, help="frame rate to sample at; every 30//fps-th frame is used")
    a("--snippet_duration", type=int, default=16, help="frames per snippet")
    a("--sample_size", type=int, default=112, help="height and width of the frames fed to the model")
    a("--seq_len", type=int, default=12, help="number of snippets (temporal segments) per video")
    a("--audio_embed_size", type=int, default=256, help="size of the audio embedding")
    a("--audio_n_segments", type=int, default=16, help="number of audio segments")
    # model
    a("--resnet_depth", type=int, default=101, help="depth of the 3D ResNet visual backbone")
    a("--resnet101_pretrained", default="", help="path of pretrained 3D ResNet-101 weights ('' for none)")
    a("--audio_pretrained", default="", help="path of pretrained audio-stream weights ('' for none)")
    # training
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
    return p


def _resolve(root, path):
    if path is None or path == "" or os.path.isabs(path):
        return path
    return os.path.join(root, path)


def finalize_opts(opt):
    """Fill dataset-dependent defaults and resolve paths against root_path (in place)."""
    defaults = DATASET_DEFAULTS[opt.dataset]
    for key in ("video_path", "audio_path", "annotation_path", "n_classes"):
        if getattr(opt, key) is None:
            setattr(opt, key, defaults[key])
    for key in ("video_path", "audio_path", "annotation_path"):
        setattr(opt, key, _resolve(opt.root_path, getattr(opt, key)))
    if opt.no_audio_cache or not opt.audio_cache:
        opt.audio_cache = None
    else:
        opt.audio_cache = _resolve(opt.root_path, opt.audio_cache)
    return opt


def parse_opts(argv=None):
    """Parse ``argv`` (list of strings; ``None`` means ``sys.argv[1:]``) into a Namespace."""
    opt = build_parser().parse_args(argv)
    return finalize_opts(opt)


if __name__ == "__main__":
    for k, v in sorted(vars(parse_opts()).items()):
        print(f"{k}: {v}")
