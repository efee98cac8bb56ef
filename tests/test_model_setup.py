"""model.py: the model set-up. Building from options and from a checkpoint's saved options,
the release's defaults, and the Kinetics / ImageNet adapters, against files written with
the real torch.save in the layouts of Hara et al.'s and torchvision's checkpoints."""
import argparse
from collections import OrderedDict

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from core.checkpoint import CheckpointError, WeightsMismatchError  # noqa: E402
from model import (MODEL_OPTIONS, checkpoint_meta, generate_model, load_pretrained_audio,  # noqa: E402
                   load_pretrained_model, load_pretrained_visual, model_config,
                   model_from_state_dict, release_defaults, saved_options)
from tests.helpers import (TINY_64 as TINY, assert_model_has, grad_flags,  # noqa: E402
                           torch_state_from, tsave)


# --------------------------------------------------------------------------------------
# Options

def test_release_defaults_come_from_the_parser():
    from opts import parse_opts
    release = {"dataset": "ve8", "n_classes": None, "fps": 30, "snippet_duration": 16,
               "sample_size": 112, "seq_len": 12, "audio_embed_size": 256,
               "audio_n_segments": 16, "resnet_depth": 101}
    defaults = release_defaults()
    assert defaults == release
    # the options a checkpoint's model is rebuilt from: exactly these, in the parser's order
    assert MODEL_OPTIONS == tuple(release)
    opt = parse_opts([])
    assert model_config(opt) == dict(defaults, n_classes=8)
    assert model_config(parse_opts(["--dataset", "ek6"]))["n_classes"] == 6


def test_generate_model_from_options_or_a_dict():
    from opts import parse_opts
    a = generate_model(parse_opts(["--resnet_depth", "10", "--seq_len", "2", "--sample_size",
                                   "64", "--snippet_duration", "8", "--audio_embed_size", "128"]))
    b = generate_model(dict(TINY, audio_embed_size=128))
    assert {k: tuple(v.shape) for k, v in a.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in b.state_dict().items()}
    assert tuple(a.state_dict()["a_fc.0.weight"].shape) == (128, 512)
    assert tuple(a.state_dict()["ta_net.fc.weight"].shape) == (2, 2)
    assert tuple(a.state_dict()["av_fc.weight"].shape) == (8, 512 + 128)


def test_saved_options_are_defaults_the_flags_override():
    from opts import build_parser
    args = build_parser().parse_args(["--root_path", "/data/ve8", "--seq_len", "2",
                                      "--video_path", "frames"])
    from datasets.catalog import Classes
    meta = checkpoint_meta(4, args, Classes(("x", "y", "z")), best_acc=0.5)
    assert meta["epoch"] == 5 and meta["best_acc"] == 0.5
    assert meta["labels"] == ["x", "y", "z"] and meta["positive_classes"] is None
    keys = ("root_path", "video_path", "audio_path", "seq_len", "n_classes", "resnet_depth")
    saved = saved_options(meta, keys)
    # None values stay unset; n_classes comes from the checkpoint's classes
    assert saved == {"root_path": "/data/ve8", "video_path": "frames", "seq_len": 2,
                     "n_classes": 3, "resnet_depth": 101}
    parser = build_parser()
    parser.set_defaults(**saved)
    again = parser.parse_args(["--seq_len", "4"])
    assert again.seq_len == 4 and again.root_path == "/data/ve8" and again.n_classes == 3
    # an older checkpoint stored its dataset paths joined to root_path: they are not
    # reused (the dataset's defaults under root_path apply, so --root_path moves the data)
    old = {"epoch": 2, "opts": {"root_path": "data", "video_path": "data/VideoEmotion8--imgs",
                                "audio_path": "/abs/data/VideoEmotion8--mp3", "seq_len": 2}}
    assert saved_options(old, keys) == {"root_path": "data", "seq_len": 2}
    assert saved_options({"epoch": 3}, keys) == {}  # a release checkpoint has no options


def test_model_from_state_dict_names_the_flags_when_it_does_not_fit(make_model):
    sd = {k: v.numpy() for k, v in make_model().state_dict().items()}
    model = model_from_state_dict(sd, TINY)
    assert not model.is_train
    np.testing.assert_array_equal(model.state_dict()["av_fc.weight"].numpy(), sd["av_fc.weight"])
    with pytest.raises(CheckpointError) as e:
        model_from_state_dict(sd, dict(TINY, seq_len=3))
    msg = str(e.value)
    assert "does not fit" in msg and "seq_len 3" in msg and "--seq_len" in msg
    assert "ta_net.fc.weight" in msg


# --------------------------------------------------------------------------------------
# Pretrained backbones: the expected key mapping, written out independently of the code

VISUAL_MAP = [("resnet.0.", "conv1."), ("resnet.1.", "bn1."), ("resnet.4.", "layer1."),
              ("resnet.5.", "layer2."), ("resnet.6.", "layer3."), ("resnet.7.", "layer4.")]
AUDIO_MAP = [("a_resnet.1.", "bn1."), ("a_resnet.4.", "layer1."), ("a_resnet.5.", "layer2."),
             ("a_resnet.6.", "layer3."), ("a_resnet.7.", "layer4.")]


def rename(sd, mapping):
    out = OrderedDict()
    for k, v in sd.items():
        for ours, theirs in mapping:
            if k.startswith(ours):
                out[theirs + k[len(ours):]] = v
    return out


def test_pretrained_visual_kinetics(tmp_path, make_model):
    model = make_model()
    flags = grad_flags(model)
    ours = torch_state_from(model, seed=2)
    hara = rename(ours, VISUAL_MAP)
    # old (PyTorch 0.3) files have no num_batches_tracked
    hara = OrderedDict((k, v) for k, v in hara.items() if "num_batches" not in k)
    # the names and shapes of Hara et al.'s ResNet-10
    assert tuple(hara["conv1.weight"].shape) == (64, 3, 7, 7, 7)
    assert tuple(hara["layer1.0.conv1.weight"].shape) == (64, 64, 3, 3, 3)
    assert tuple(hara["layer2.0.downsample.0.weight"].shape) == (128, 64, 1, 1, 1)
    assert "layer4.0.downsample.1.running_var" in hara and "bn1.running_mean" in hara
    hara["fc.weight"] = torch.randn(400, 512)
    hara["fc.bias"] = torch.randn(400)
    hara = OrderedDict(("module." + k, v) for k, v in hara.items())
    path = tsave({"epoch": 200, "arch": "resnet-10", "state_dict": hara,
                  "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "params": [0]}]}},
                 tmp_path / "resnet-10-kinetics.pth", "legacy")
    untouched = model.state_dict()["conv0.0.weight"].numpy().copy()
    report = load_pretrained_visual(model, path)
    backbone = [k for k in ours if k.startswith("resnet.") and "num_batches" not in k]
    assert sorted(report.loaded) == sorted(backbone)
    assert_model_has(model, ours, backbone)
    np.testing.assert_array_equal(model.state_dict()["conv0.0.weight"].numpy(), untouched)
    assert grad_flags(model) == flags

    del hara["module.layer3.0.bn1.weight"]
    hara["module.layer2.0.conv2.weight"] = torch.zeros(128, 128, 3, 3)
    tsave({"state_dict": hara}, tmp_path / "broken.pth", "legacy")
    with pytest.raises(WeightsMismatchError) as e:
        load_pretrained_visual(model, tmp_path / "broken.pth")
    assert "resnet.6.0.bn1.weight [256]" in str(e.value)
    assert "resnet.5.0.conv2.weight file [128, 128, 3, 3] vs model [128, 128, 3, 3, 3]" \
        in str(e.value)


def test_pretrained_audio_imagenet(tmp_path, make_model):
    model = make_model()
    flags = grad_flags(model)
    ours = torch_state_from(model, seed=3)
    tv = OrderedDict([("conv1.weight", torch.randn(64, 3, 7, 7))])
    tv.update(rename(ours, AUDIO_MAP))
    assert tuple(tv["layer2.0.downsample.0.weight"].shape) == (128, 64, 1, 1)
    assert tuple(tv["layer4.1.conv2.weight"].shape) == (512, 512, 3, 3)
    tv["fc.weight"] = torch.randn(1000, 512)
    tv["fc.bias"] = torch.randn(1000)
    path = tsave(tv, tmp_path / "resnet18-f37072fd.pth", "zip")
    conv1 = model.state_dict()["a_resnet.0.weight"].numpy().copy()
    report = load_pretrained_audio(model, path)
    filled = [k for k in ours if k.startswith("a_resnet.") and not k.startswith("a_resnet.0.")]
    assert sorted(report.loaded) == sorted(filled)
    assert_model_has(model, ours, filled)
    np.testing.assert_array_equal(model.state_dict()["a_resnet.0.weight"].numpy(), conv1)
    assert grad_flags(model) == flags

    del tv["layer1.1.bn2.running_var"]
    tsave(tv, tmp_path / "partial.pth", "zip")
    with pytest.raises(WeightsMismatchError, match=r"a_resnet\.4\.1\.bn2\.running_var"):
        load_pretrained_audio(model, tmp_path / "partial.pth")


def test_load_pretrained_model_reads_the_options(tmp_path, make_model, monkeypatch):
    model = make_model()
    calls = []
    monkeypatch.setattr("model.load_pretrained_visual", lambda m, p: calls.append(("visual", p)))
    monkeypatch.setattr("model.load_pretrained_audio", lambda m, p: calls.append(("audio", p)))
    opt = argparse.Namespace(resnet101_pretrained="", audio_pretrained="")
    assert load_pretrained_model(model, opt) is model and calls == []
    opt = argparse.Namespace(resnet101_pretrained="k.pth", audio_pretrained="i.pth")
    load_pretrained_model(model, opt)
    assert calls == [("visual", "k.pth"), ("audio", "i.pth")]
