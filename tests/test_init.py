"""Where training starts: every tensor that no pretrained file supplies starts as in the
release.

The port and the PyTorch reference (tests/torch_reference.py, initialised as the release
initialises: Kaiming-normal (fan_out) for the visual heads' Conv1d weights, PyTorch's
defaults everywhere else, ``ta_net.fc.bias`` 1) are each built from ``SEEDS`` seeds; for
every such tensor the values pooled over the seeds are compared: a constant tensor
(BatchNorm weight 1 and bias 0, running statistics 0 and 1, ``ta_net.fc.bias``) must equal
the reference's exactly, a random one must pass a two-sample Kolmogorov-Smirnov test and
have the same spread. The tensors a pretrained file supplies (the 3D ResNet, and the audio
ResNet-18 but its first convolution) are not compared.

Positive controls: a port whose audio attention's Conv1d is drawn Kaiming-normal (the
visual heads' init, where the release keeps PyTorch's default), or whose ``conv0`` bias
starts at zero, must be rejected.
"""
import numpy as np
import pytest
from scipy import stats

from core.jittor_setup import jt
from models.layers import kaiming_normal_fan_out
from models.vaanet import VAANet

CONFIG = dict(snippet_duration=16, sample_size=112, seq_len=4, resnet_depth=10)
SEEDS = range(8)
P_MIN = 1e-4  # KS p-value below which two draws are judged different distributions
PRETRAINED = ("resnet.", "a_resnet.")  # a_resnet.0 (its first conv) is new: compared


def _new_tensors(state):
    return {k: v for k, v in state.items()
            if not k.startswith(PRETRAINED) or k.startswith("a_resnet.0.")
            if not k.endswith("num_batches_tracked")}


def _pooled(build):
    """``{name: values of every seed, concatenated}`` of the tensors no file supplies."""
    pooled = {}
    for seed in SEEDS:
        for k, v in _new_tensors(build(seed)).items():
            pooled.setdefault(k, []).append(np.asarray(v, np.float64).ravel())
    return {k: np.concatenate(v) for k, v in pooled.items()}


def _reference(seed):
    import torch
    from tests.torch_reference import TorchVAANet

    torch.manual_seed(seed)
    return {k: v.numpy() for k, v in TorchVAANet(**CONFIG).state_dict().items()}


def _port(seed, change=None):
    jt.set_global_seed(seed)
    model = VAANet(**CONFIG)
    if change is not None:
        change(model)
    return {k: v.numpy() for k, v in model.state_dict().items()}


def differences(port, ref):
    """The names whose values are not drawn as the reference's, each with why."""
    assert sorted(port) == sorted(ref)
    bad = []
    for k, r in ref.items():
        p = port[k]
        if np.all(r == r[0]):
            if not np.all(p == r[0]):
                bad.append(f"{k}: constant {r[0]} in the reference, port {p.min()}..{p.max()}")
            continue
        pvalue = stats.ks_2samp(p, r).pvalue
        spread = p.std() / r.std()
        if pvalue < P_MIN or not 0.8 < spread < 1.25:
            bad.append(f"{k}: KS p = {pvalue:.1e}, std {p.std():.3g} vs {r.std():.3g}")
    return bad


@pytest.fixture(scope="module")
def reference():
    return _pooled(_reference)


def test_every_new_tensor_starts_as_in_the_release(reference):
    assert len(reference) == 43  # 31 parameters and 12 BatchNorm statistics (6 BatchNorms)
    assert differences(_pooled(_port), reference) == []


def _kaiming_audio_attention(model):
    kaiming_normal_fan_out(model.aa_net.conv[0].weight)


def _zero_conv0_bias(model):
    model.conv0[0].bias.assign(jt.zeros(model.conv0[0].bias.shape))


@pytest.mark.parametrize("change, name", [(_kaiming_audio_attention, "aa_net.conv.0.weight"),
                                          (_zero_conv0_bias, "conv0.0.bias")])
def test_control_with_another_init_is_rejected(reference, change, name):
    bad = differences(_pooled(lambda seed: _port(seed, change)), reference)
    assert [b.split(":")[0] for b in bad] == [name]
