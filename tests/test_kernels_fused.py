"""The fused CPU kernels against PyTorch in float64, with gradients: training-mode BatchNorm
with a residual added before its ReLU (the last BatchNorm of every ResNet block), its
one-pass batch statistics, eval-mode BatchNorm with a residual, the BatchNorm+ReLU pairs
that ``FusedSequential`` runs as one call, Adam's one-pass update, and which oneDNN the
convolution kernels are built against."""
import numpy as np
import pytest
import torch

from core.jittor_setup import jt
from jittor import nn
from models.layers import BatchNorm
from models.resnet3d import FusedSequential

CASES = [((2, 3, 4, 5, 6), 4), ((4, 6, 5, 7), 1), ((3, 5, 4, 8), 3)]  # shape, channel axis


def _torch_bn(c, ndim):
    return {2: torch.nn.BatchNorm1d, 3: torch.nn.BatchNorm1d, 4: torch.nn.BatchNorm2d,
            5: torch.nn.BatchNorm3d}[ndim](c).double()


def _perm(ndim, axis):
    """Axes that move the channel axis to 1, as PyTorch lays it out."""
    return (0, axis) + tuple(i for i in range(1, ndim) if i != axis)


def _setup(shape, axis, seed):
    rng = np.random.default_rng(seed)
    c = shape[axis]
    x = (rng.standard_normal(shape) * 3 + 2).astype(np.float32)
    r = rng.standard_normal(shape).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    bn = BatchNorm(c, axis=axis)
    bn.weight.assign(jt.array(rng.uniform(0.5, 1.5, c).astype(np.float32)))
    bn.bias.assign(jt.array(rng.standard_normal(c).astype(np.float32)))
    bn.running_mean.assign(jt.array(rng.standard_normal(c).astype(np.float32)))
    bn.running_var.assign(jt.array(rng.uniform(0.5, 2.0, c).astype(np.float32)))
    ref = _torch_bn(c, len(shape))
    with torch.no_grad():
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(ref, name).copy_(torch.from_numpy(getattr(bn, name).numpy()))
    return x, r, dy, bn, ref


@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("shape,axis", CASES)
def test_training_batchnorm_with_residual_equals_pytorch(shape, axis, relu):
    x, r, dy, bn, ref = _setup(shape, axis, seed=len(shape) + axis)
    bn.train()
    xv, rv = jt.array(x), jt.array(r)
    y = bn(xv, relu=relu, residual=rv)
    gx, gr, gw, gb = jt.grad((y * jt.array(dy)).sum(), [xv, rv, bn.weight, bn.bias])

    perm = _perm(len(shape), axis)
    inv = np.argsort(perm)
    xt = torch.from_numpy(x).double().permute(*perm).requires_grad_()
    rt = torch.from_numpy(r).double().permute(*perm).requires_grad_()
    ref.train()
    yt = ref(xt) + rt
    yt = torch.relu(yt) if relu else yt
    (yt * torch.from_numpy(dy).double().permute(*perm)).sum().backward()
    expect = yt.detach().permute(*inv).numpy()
    np.testing.assert_allclose(y.numpy(), expect, rtol=0, atol=3e-6)
    np.testing.assert_allclose(gx.numpy(), xt.grad.permute(*inv).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gr.numpy(), rt.grad.permute(*inv).numpy(), rtol=0, atol=1e-7)
    np.testing.assert_allclose(gw.numpy(), ref.weight.grad.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gb.numpy(), ref.bias.grad.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(bn.running_mean.numpy(), ref.running_mean.numpy(), rtol=1e-6,
                               atol=1e-7)
    np.testing.assert_allclose(bn.running_var.numpy(), ref.running_var.numpy(), rtol=1e-6)
    # positive control: the same comparison rejects the output without the residual
    bn.train()
    without = bn(jt.array(x), relu=relu).numpy()
    assert np.abs(without - expect).max() > 1e-2


def test_training_batchnorm_statistics_of_a_large_offset():
    """One pass over the data gives both moments (float64 sums shifted by each channel's
    first value): exact even where E[x^2] - E[x]^2 would cancel 12 digits."""
    rng = np.random.default_rng(3)
    x = (1e5 + 0.1 * rng.standard_normal((64, 3, 50))).astype(np.float32)
    bn = BatchNorm(3)
    bn.train()
    bn(jt.array(x)).sync()
    xd = x.astype(np.float64)
    mean = xd.mean(axis=(0, 2))
    var = xd.var(axis=(0, 2), ddof=1)
    np.testing.assert_allclose(bn.running_mean.numpy(), 0.1 * mean, rtol=1e-7)
    np.testing.assert_allclose(bn.running_var.numpy(), 0.9 + 0.1 * var, rtol=1e-6)
    # positive control: the unshifted float64 formula is off by far more than that
    naive = (xd ** 2).mean(axis=(0, 2)) - xd.mean(axis=(0, 2)) ** 2
    naive *= xd.size / 3 / (xd.size / 3 - 1)
    assert np.abs(naive - var).max() / var.max() > 1e-5


@pytest.mark.parametrize("shape,axis", CASES)
def test_eval_batchnorm_with_residual_equals_pytorch(shape, axis):
    """Eval mode, residual and ReLU included (Jittor fuses them into one pass), with and
    without a graph, against PyTorch's eval BatchNorm."""
    x, r, _, bn, ref = _setup(shape, axis, seed=7 + axis)
    perm = _perm(len(shape), axis)
    inv = np.argsort(perm)
    ref.eval()
    with torch.no_grad():
        expect = torch.relu(ref(torch.from_numpy(x).double().permute(*perm))
                            + torch.from_numpy(r).double().permute(*perm))
    expect = expect.permute(*inv).numpy()
    bn.eval()
    with jt.no_grad():
        y = bn(jt.array(x), relu=True, residual=jt.array(r)).numpy()
    np.testing.assert_allclose(y, expect, rtol=0, atol=2e-6 * np.abs(expect).max())
    y_graph = bn(jt.array(x), relu=True, residual=jt.array(r)).numpy()
    np.testing.assert_allclose(y_graph, expect, rtol=0, atol=2e-6 * np.abs(expect).max())
    with jt.no_grad():  # positive control: without the ReLU it differs
        plain = bn(jt.array(x), residual=jt.array(r)).numpy()
    assert np.abs(plain - expect).max() > 1e-2


@pytest.mark.parametrize("train", [True, False])
def test_fused_sequential_equals_its_layers_one_by_one(train):
    """BatchNorm then ReLU run as one fused call; a ReLU after anything else stays a ReLU."""
    rng = np.random.default_rng(5)
    x = jt.array(rng.standard_normal((4, 6, 5, 3)).astype(np.float32))
    layers = [BatchNorm(3, axis=3), nn.ReLU(), nn.Tanh(), nn.ReLU(), BatchNorm(3, axis=3)]
    seq = FusedSequential(*layers)
    seq.train() if train else seq.eval()
    fused = seq(x).numpy()
    y = x
    for layer in layers:
        y = layer(y)
    np.testing.assert_allclose(fused, y.numpy(), rtol=1e-6, atol=1e-6)
    assert set(seq.state_dict()) == {f"{i}.{k}" for i in (0, 4) for k in
                                     ("weight", "bias", "running_mean", "running_var",
                                      "num_batches_tracked")}


def test_onednn_build_is_the_chosen_one():
    """The convolution kernels use Jittor's oneDNN 2.2, or with VAANET_ONEDNN=pypi the 3.x
    of PyPI's GNU-OpenMP build, and the library they use is the one loaded."""
    import os
    from models.kernels.onednn import onednn_ops, onednn_version
    if jt.flags.use_cuda or onednn_ops() is None:
        pytest.skip("no CPU oneDNN kernels here")
    major = "3" if os.environ.get("VAANET_ONEDNN") == "pypi" else "2"
    assert onednn_version().split(".")[0] == major
    from models.layers import Conv3d
    conv = Conv3d(4, 8, 3, 1, 1)
    with jt.no_grad():
        conv(jt.ones((1, 3, 4, 4, 4))).sync()
    with open("/proc/self/maps") as f:
        assert f"libdnnl.so.{major}" in f.read()


def test_adam_kernel_follows_pytorch_over_many_tensors():
    """The one-pass Adam update (chunks across tensors of very different sizes, one
    parameter left out of the update) against torch.optim.Adam over several steps."""
    from core.optimizer import Adam
    rng = np.random.default_rng(11)
    shapes = [(70000,), (3, 5), (1,), (300, 129)]
    w0 = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    tw = [torch.nn.Parameter(torch.from_numpy(w.copy())) for w in w0]
    jw = [jt.array(w.copy()) for w in w0]
    jw[2].stop_grad()  # frozen: neither updated nor counted
    topt = torch.optim.Adam([tw[i] for i in (0, 1, 3)], lr=3e-3, weight_decay=1e-2)
    jopt = Adam(jw, lr=3e-3, weight_decay=1e-2)
    for step in range(4):
        scale = [rng.standard_normal(s).astype(np.float32) for s in shapes]
        topt.zero_grad()
        sum((torch.from_numpy(c) * w.sin()).sum() for c, w in zip(scale, tw)).backward()
        topt.step()
        jopt.step(sum((jt.array(c) * w.sin()).sum() for c, w in zip(scale, jw)))
    for i in (0, 1, 3):
        np.testing.assert_allclose(jw[i].numpy(), tw[i].detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(jw[2].numpy(), w0[2])
    assert jopt.steps == [4, 4, 0, 4]
    state = jopt.state_dict()["state"]
    ref = topt.state[tw[3]]["exp_avg_sq"].numpy()
    np.testing.assert_allclose(state[3]["exp_avg_sq"], ref, rtol=0, atol=1e-6 * ref.max())
    # positive control: one step fewer is far from PyTorch's weights
    assert np.abs(w0[0] - tw[0].detach().numpy()).max() > 1e-3
