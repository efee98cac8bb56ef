"""The layers of models/layers.py against PyTorch on small random inputs: Conv3d through
oneDNN (no gradient) and through the portable tap sum (with one), and max pooling."""
import numpy as np
import pytest
import torch

from core.jittor_setup import jt
from models.kernels.onednn import onednn_ops
from models.layers import Conv3d, max_pool

CASES = [  # in, out, kernel, stride, padding, T, H
    (3, 8, 7, (1, 2, 2), 3, 6, 20),      # conv1's shape
    (16, 16, 3, 1, 1, 4, 9),
    (16, 32, 3, 2, 1, 5, 9),
    (8, 16, 1, (1, 2, 2), 0, 3, 8),      # a strided 1x1x1 downsample
]


def _reference(x, w, stride, padding):
    out = torch.nn.functional.conv3d(torch.from_numpy(x).permute(0, 4, 1, 2, 3),
                                     torch.from_numpy(w), stride=stride, padding=padding)
    return out.permute(0, 2, 3, 4, 1).numpy()


@pytest.mark.parametrize("ci,co,k,stride,padding,t,h", CASES)
def test_conv3d_equals_pytorch_on_both_paths(ci, co, k, stride, padding, t, h):
    rng = np.random.default_rng(ci + co + k)
    x = rng.standard_normal((2, t, h, h + 1, ci)).astype(np.float32)
    conv = Conv3d(ci, co, k, stride, padding)
    ref = _reference(x, conv.weight.numpy(), conv.stride, conv.padding)
    with jt.no_grad():
        direct = conv(jt.array(x)).numpy()
    xv = jt.array(x)
    xv.start_grad()  # a gradient is wanted: the portable tap sum
    portable = conv(xv)
    grad = jt.grad(portable.sum(), xv).numpy()
    scale = np.abs(ref).max()
    assert direct.shape == ref.shape == portable.shape
    assert np.abs(direct - ref).max() < 1e-5 * scale
    assert np.abs(portable.numpy() - ref).max() < 1e-5 * scale
    xt = torch.from_numpy(x).permute(0, 4, 1, 2, 3).requires_grad_()
    torch.nn.functional.conv3d(xt, torch.from_numpy(conv.weight.numpy()), stride=conv.stride,
                               padding=conv.padding).sum().backward()
    ref_grad = xt.grad.permute(0, 2, 3, 4, 1).numpy()
    assert np.abs(grad - ref_grad).max() < 1e-5 * np.abs(ref_grad).max()


def test_onednn_kernel_is_built_on_the_cpu():
    assert jt.flags.use_cuda or onednn_ops() is not None


def test_max_pool_equals_pytorch_with_gradient():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 9, 7)).astype(np.float32)
    xv = jt.array(x)
    y = max_pool(xv, (3, 3), (2, 2), (1, 1), axes=(2, 3))
    g = jt.grad((y * y).sum(), xv).numpy()
    xt = torch.from_numpy(x).requires_grad_()
    yt = torch.nn.functional.max_pool2d(xt, 3, 2, 1)
    (yt * yt).sum().backward()
    np.testing.assert_array_equal(y.numpy(), yt.detach().numpy())
    np.testing.assert_allclose(g, xt.grad.numpy(), rtol=1e-6, atol=1e-6)
    x3 = rng.standard_normal((1, 5, 6, 6, 4)).astype(np.float32)
    y3 = max_pool(jt.array(x3), (3, 3, 3), (2, 2, 2), (1, 1, 1), axes=(1, 2, 3)).numpy()
    ref3 = torch.nn.functional.max_pool3d(torch.from_numpy(x3).permute(0, 4, 1, 2, 3), 3, 2, 1)
    np.testing.assert_array_equal(y3, ref3.permute(0, 2, 3, 4, 1).numpy())


@pytest.mark.parametrize("shape,axis", [((4, 6, 5, 7), 1), ((2, 3, 4, 5, 6), 4), ((9, 5), 1),
                                        ((3, 1, 11), 1)])
def test_training_batchnorm_equals_pytorch(shape, axis):
    """The CPU kernels of training-mode BatchNorm: output, running statistics and the
    gradients of input, weight and bias against PyTorch in float64."""
    from models.layers import BatchNorm
    rng = np.random.default_rng(len(shape))
    x = (rng.standard_normal(shape) * 3 + 5).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    c = shape[axis]
    bn = BatchNorm(c, axis=axis)
    bn.weight.assign(jt.array(rng.uniform(0.5, 1.5, c).astype(np.float32)))
    bn.bias.assign(jt.array(rng.standard_normal(c).astype(np.float32)))
    bn.train()
    xv = jt.array(x)
    y = bn(xv)
    gx, gw, gb = jt.grad((y * jt.array(dy)).sum(), [xv, bn.weight, bn.bias])

    perm = (0, axis) + tuple(i for i in range(1, len(shape)) if i != axis)
    xt = torch.from_numpy(x).double().permute(*perm).requires_grad_()
    ref_bn = torch.nn.BatchNorm1d(c).double() if len(shape) <= 3 else \
        torch.nn.BatchNorm3d(c).double() if len(shape) == 5 else torch.nn.BatchNorm2d(c).double()
    with torch.no_grad():
        ref_bn.weight.copy_(torch.from_numpy(bn.weight.numpy()))
        ref_bn.bias.copy_(torch.from_numpy(bn.bias.numpy()))
    yt = ref_bn(xt)
    (yt * torch.from_numpy(dy).double().permute(*perm)).sum().backward()
    inv = np.argsort(perm)
    np.testing.assert_allclose(y.numpy(), yt.detach().permute(*inv).numpy(), rtol=0, atol=2e-6)
    np.testing.assert_allclose(gx.numpy(), xt.grad.permute(*inv).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gw.numpy(), ref_bn.weight.grad.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gb.numpy(), ref_bn.bias.grad.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(bn.running_mean.numpy(), ref_bn.running_mean.numpy(), rtol=1e-6)
    np.testing.assert_allclose(bn.running_var.numpy(), ref_bn.running_var.numpy(), rtol=1e-6)
