"""benchmarks/release_model.py: building the release's model from a checkout of it, on a
stand-in checkout written here (the release's layout and entry points, a few lines of
ours: ``core/model.py``'s ``generate_model``, the ``.cuda()`` calls, the Kinetics loader
``pretrained_resnet101`` and torchvision's ``resnet18(pretrained=True)``), with a stand-in
torchvision in it that would download when asked for weights."""
import importlib
import sys
import textwrap

import pytest
import torch

import core.checkpoint  # noqa: F401  (this project's core, which the release's shadows)
from benchmarks.release_model import (ReleaseError, build_release_model, check_release_src,
                                      harmless_build)

STAND_IN = {
    "core/__init__.py": "",
    "core/model.py": """
        from models.vaanet import VAANet

        def generate_model(opt):
            model = VAANet(opt.sample_size, opt.n_classes, opt.resnet101_pretrained)
            model = model.cuda()
            return model, model.parameters()
        """,
    "models/__init__.py": "",
    "models/resnet.py": """
        import torch
        import torch.nn as nn

        def resnet101(n_classes, sample_duration, sample_size):
            return nn.Linear(sample_size, n_classes)

        def pretrained_resnet101(snippet_duration, sample_size, n_classes=8,
                                 ft_begin_index=5, pretrained_resnet101_path=""):
            model = resnet101(n_classes, snippet_duration, sample_size).cuda()
            model.load_state_dict(torch.load(pretrained_resnet101_path))
            return model, model.parameters()
        """,
    "models/visual_stream.py": """
        from models.resnet import pretrained_resnet101

        def encoder(sample_size, n_classes, path):
            resnet, _ = pretrained_resnet101(snippet_duration=16, sample_size=sample_size,
                                             n_classes=n_classes, pretrained_resnet101_path=path)
            return resnet
        """,
    "models/vaanet.py": """
        import torch.nn as nn
        import torchvision
        from models.visual_stream import encoder

        class VAANet(nn.Module):
            def __init__(self, sample_size, n_classes, path):
                super().__init__()
                self.resnet = encoder(sample_size, n_classes, path)
                self.a_resnet = torchvision.models.resnet18(pretrained=True)
        """,
    "torchvision/__init__.py": "from . import models\n",
    "torchvision/models/__init__.py": """
        import torch.hub
        import torch.nn as nn

        CALLS = []

        def resnet18(pretrained=False, weights=None):
            CALLS.append(dict(pretrained=pretrained, weights=weights))
            if pretrained or weights is not None:
                torch.hub.download_url_to_file("https://example.invalid/r18.pth", "r18.pth")
            return nn.Linear(3, 3)
        """,
}

OPTIONS = dict(dataset="ve8", n_classes=8, fps=30, snippet_duration=16, sample_size=112,
               seq_len=2, audio_embed_size=256, audio_n_segments=16, resnet_depth=101)


@pytest.fixture
def stand_in(tmp_path):
    for rel, text in STAND_IN.items():
        path = tmp_path / "VAANet" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))

    def hidden():  # this project's models and a real torchvision, while the test runs
        return {k: m for k, m in sys.modules.items()
                if k.split(".")[0] in ("torchvision", "models")}
    saved = hidden()
    for name in saved:
        del sys.modules[name]
    yield tmp_path / "VAANet"
    for name in hidden():
        del sys.modules[name]
    sys.modules.update(saved)


def test_build_runs_the_checkout_without_cuda_download_or_checkpoint(stand_in):
    path, ours = list(sys.path), sys.modules["core"]
    cuda, download = torch.nn.Module.cuda, torch.hub.download_url_to_file
    model = build_release_model(str(stand_in), OPTIONS)
    # built by the checkout's classes, on the CPU, its encoder without the checkpoint
    assert type(model).__module__ == "models.vaanet"
    assert {p.device.type for p in model.parameters()} == {"cpu"}
    assert model.resnet.in_features == 112 and model.resnet.out_features == 8
    calls = type(model).__init__.__globals__["torchvision"].models.CALLS
    assert calls == [dict(pretrained=False, weights=None)]
    # and everything as it was: this project's modules, the import path, torch
    assert sys.path == path and sys.modules["core"] is ours
    assert "models" not in sys.modules and "torchvision" not in sys.modules
    assert importlib.import_module("core.checkpoint").__file__.startswith(ours.__path__[0])
    assert torch.nn.Module.cuda is cuda and torch.hub.download_url_to_file is download


def test_download_during_the_build_is_refused(stand_in):
    download = torch.hub.download_url_to_file
    sys.path.insert(0, str(stand_in))  # the stand-in torchvision
    try:
        with harmless_build(), pytest.raises(ReleaseError, match="download"):
            torch.hub.download_url_to_file("https://example.invalid/x.pth", "x.pth")
    finally:
        sys.path.remove(str(stand_in))
    assert torch.hub.download_url_to_file is download


def test_check_refuses_what_the_release_cannot_build(stand_in, tmp_path):
    check_release_src(str(stand_in), OPTIONS, batch=2)
    with pytest.raises(ReleaseError, match="core/model.py"):
        check_release_src(str(tmp_path), OPTIONS, batch=2)
    with pytest.raises(ReleaseError, match="resnet_depth"):
        check_release_src(str(stand_in), dict(OPTIONS, resnet_depth=18), batch=2)
    with pytest.raises(ReleaseError, match="in place"):
        check_release_src(str(stand_in), OPTIONS, batch=1)
