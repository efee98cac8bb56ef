"""The PyTorch release's own VAANet, built from a checkout of it, for the benchmarks.

    from benchmarks.release_model import check_release_src, build_release_model
    check_release_src("path/to/VAANet", options, batch)    # ReleaseError: a usage error
    model = build_release_model("path/to/VAANet", options)  # options: model.model_config

Nothing of the release is part of this project: the checkout a user has is imported at run
time, through its own ``core.model.generate_model(opt)``, with the port's options. Its
packages share names with this project's (``models``, ``core``, ``datasets``, ``opts``...),
so they are imported with the checkout first on ``sys.path`` and this project's modules of
those names put aside; afterwards ``sys.path`` and ``sys.modules`` are as they were (the
model keeps its classes). For the duration of the build only, three things that a CPU
benchmark cannot or should not do are made harmless:

- ``.cuda()``: the release moves its modules to the GPU as it builds them
  (``torch.nn.Module.cuda`` returns the module unchanged; the caller moves the model);
- torchvision's ImageNet ResNet-18 (the audio stream's, ``resnet18(pretrained=True)``) is
  built with ``weights=None``, and any download is refused;
- the Kinetics checkpoint of the 3D ResNet-101: the release's ``pretrained_resnet101``
  reads it from ``--resnet101_pretrained`` into the release's ``resnet101``; the build
  takes that ``resnet101`` without the checkpoint (the benchmark's sides share one set of
  weights for its check anyway, and reading 340 MB would count in the release's peak
  memory).

The release needs torchvision (see benchmarks/README.md for the version).
"""
import argparse
import contextlib
import functools
import importlib
import os
import sys
from unittest import mock

#: The release's files that the build goes through.
RELEASE_FILES = ("core/model.py", "models/vaanet.py", "models/visual_stream.py",
                 "models/resnet.py")

#: The only model the release builds: its attention sizes are constants (16 positions of
#: a ResNet-101's 2048 channels).
RELEASE_SIZES = dict(resnet_depth=101, snippet_duration=16, sample_size=112)


class ReleaseError(Exception):
    """The checkout or the configuration cannot give the release's model."""


def check_release_src(src, options, batch):
    """Raise ReleaseError unless ``src`` looks like a checkout of the release and
    ``options`` (and ``batch``) are sizes the release's model runs at."""
    missing = [f for f in RELEASE_FILES if not os.path.isfile(os.path.join(src, f))]
    if missing:
        raise ReleaseError(f"{src}: not a checkout of the PyTorch release of VAANet "
                           f"(no {', '.join(missing)}); pass the folder of a clone of it")
    wrong = {k: options[k] for k, v in RELEASE_SIZES.items() if options[k] != v}
    if wrong:
        raise ReleaseError(f"the release builds only {RELEASE_SIZES}, not {wrong}: "
                           "use --config bench or full")
    if 1 in (batch, options["seq_len"]):
        # its forward's transpose is then no copy, and the benchmark reuses one input
        raise ReleaseError("the release's model normalises its input in place when batch or "
                           "seq_len is 1")


def release_names(src):
    """The top-level modules and packages of the checkout."""
    return {name[:-3] if name.endswith(".py") else name for name in os.listdir(src)
            if name.endswith(".py") or os.path.isfile(os.path.join(src, name, "__init__.py"))}


@contextlib.contextmanager
def release_imports(src):
    """Imports inside see the checkout's modules, not this project's of the same names."""
    names = release_names(src)

    def ours(name):
        return name.split(".")[0] in names

    saved_path = list(sys.path)
    saved = {k: m for k, m in sys.modules.items() if ours(k)}
    for k in saved:
        del sys.modules[k]
    sys.path.insert(0, os.path.abspath(src))
    importlib.invalidate_caches()
    try:
        yield
    finally:
        sys.path[:] = saved_path
        for k in [k for k in sys.modules if ours(k)]:
            del sys.modules[k]
        sys.modules.update(saved)


def _refuse_download(url, *args, **kwargs):
    raise ReleaseError(f"the release's model asked for a download ({url}) while it was built")


def _without_weights(build):
    """torchvision's model builder with pretrained weights asked for, built without."""
    @functools.wraps(build)
    def wrapper(*args, pretrained=False, weights=None, **kwargs):
        return build(*args, weights=None, **kwargs)
    return wrapper


@contextlib.contextmanager
def harmless_build():
    """``.cuda()`` a no-op, torchvision's ResNet-18 without ImageNet weights, downloads
    refused; all put back on exit."""
    import torch
    import torch.hub
    import torchvision

    with mock.patch.object(torch.nn.Module, "cuda", lambda self, device=None: self), \
            mock.patch.object(torchvision.models, "resnet18",
                              _without_weights(torchvision.models.resnet18)), \
            mock.patch.object(torch.hub, "download_url_to_file", _refuse_download):
        yield


def build_release_model(src, options):
    """The release's VAANet from the checkout in ``src``, on the CPU, at ``options``
    (``model.model_config``'s keys), with the release's own initial weights."""
    with release_imports(src), harmless_build():
        release_model = importlib.import_module("core.model")
        visual_stream = importlib.import_module("models.visual_stream")
        resnet = importlib.import_module("models.resnet")

        def without_checkpoint(snippet_duration, sample_size, n_classes, **_):
            return resnet.resnet101(n_classes, snippet_duration, sample_size), None

        opt = argparse.Namespace(**options, resnet101_pretrained="")
        with mock.patch.object(visual_stream, "pretrained_resnet101", without_checkpoint):
            model, _ = release_model.generate_model(opt)
    return model
