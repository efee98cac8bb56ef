"""The layers of models/layers.py against PyTorch on small random inputs: Conv3d through
oneDNN (no gradient) and through the portable tap sum (with one), and max pooling."""
import numpy as np
import pytest
import torch

from core.jittor_setup import jt
from models.kernels import onednn_ops
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
