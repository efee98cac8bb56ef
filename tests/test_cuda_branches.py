"""The CUDA and MPI branches of models/layers.py, run on the CPU against the CPU path.

``models.backend.device`` is swapped for ``CudaOnCpu``: ``cuda`` is true, so every layer takes its
CUDA branch (channels-last cuDNN convolutions with their arguments and layouts, the
1x1x1 convolution as one cuBLAS product, BatchNorm's graph path with float64 statistics,
the gather-max pooling and its gradient), and only the vendor calls are replaced: by CPU
versions of cuDNN's and cuBLAS' ops written here from Jittor's op contracts (Jittor's own
portable convolutions underneath, not the oneDNN kernels of the CPU path). With
``world=R`` the MPI branch runs too, as R processes holding the same shard (an all-reduce
is then R times the local value, and so is its gradient).

Each equivalence carries a positive control, a deliberately wrong variant it must reject.
"""
import numpy as np
import pytest
import torch

from core.jittor_setup import jt

import models.layers as layers
from models import backend
from models.kernels.onednn import conv3d_ndhwc
from models.layers import BatchNorm, Conv2d, Conv3d, max_pool


class CpuCudnn:
    """cuDNN's convolution ops of Jittor (extern/cuda/cudnn), same arguments and layouts,
    computed by the CPU path's own oneDNN kernel: the comparison is then of the branches'
    logic (layouts, reshapes, the graph BatchNorm), not of two convolution algorithms,
    whose different rounding flips a few ReLUs after the train-mode BatchNorms and moves
    the audio stream's gradients by ~1e-3 (docs/faithfulness.md)."""

    @staticmethod
    def cudnn_conv3d(x, w, strided, strideh, stridew, paddingd, paddingh, paddingw,
                     dilationd, dilationh, dilationw, groups, xformat):
        assert xformat in ("ncdhw", "ndhwc"), xformat
        assert (dilationd, dilationh, dilationw, groups) == (1, 1, 1, 1)
        xl = x if xformat == "ndhwc" else x.transpose(0, 2, 3, 4, 1)
        assert w.ndim == 5 and w.shape[1] == xl.shape[4], (x.shape, w.shape)
        y = conv3d_ndhwc(xl, w, (strided, strideh, stridew), (paddingd, paddingh, paddingw))
        return y if xformat == "ndhwc" else y.transpose(0, 4, 1, 2, 3)

    @staticmethod
    def cudnn_conv(x, w, strideh, stridew, paddingh, paddingw, dilationh=1, dilationw=1,
                   groups=1, xformat="abcd", wformat="oihw", yformat=""):
        # Jittor's layout letters: a = N, b = C, c = H, d = W, in memory order
        assert sorted(xformat) == list("abcd") and wformat == "oihw", (xformat, wformat)
        assert (dilationh, dilationw, groups) == (1, 1, 1)
        xl = x.transpose([xformat.index(c) for c in "acdb"])  # N, H, W, C
        n, h, wd, c = xl.shape
        assert w.ndim == 4 and w.shape[1] == c, (x.shape, w.shape)
        o = w.shape[0]
        y = conv3d_ndhwc(xl.reshape(n, 1, h, wd, c), w.reshape(o, c, 1, *w.shape[2:]),
                         (1, strideh, stridew), (0, paddingh, paddingw))
        y = y.reshape(n, *y.shape[2:])  # N, H', W', O
        return y.transpose(["acdb".index(ch) for ch in (yformat or xformat)])


class CpuCublas:
    @staticmethod
    def cublas_matmul(a, b, trans_a, trans_b):
        assert a.ndim == 2 and b.ndim == 2
        return jt.matmul(a.transpose(1, 0) if trans_a else a, b.transpose(1, 0) if trans_b else b)


class CudaOnCpu(backend.Device):
    """The CUDA branches on the CPU; with ``world > 1`` the MPI branch too."""

    def __init__(self, world=1):
        self.world = world

    cuda = True
    cudnn = CpuCudnn()
    cublas = CpuCublas()

    @property
    def mpi(self):
        return self.world > 1

    def all_reduce(self, x):
        return x * self.world


@pytest.fixture
def cuda_on_cpu(monkeypatch):
    def use(world=1):
        monkeypatch.setattr(backend, "device", CudaOnCpu(world))
    return use


@pytest.fixture(autouse=True, scope="module")
def torch_native_kernels():
    with torch.backends.mkldnn.flags(enabled=False):  # as in test_layers.py
        yield


def close(a, b, tol=1e-5):
    """Within float32 noise of the larger magnitude."""
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and np.abs(a - b).max() <= tol * max(np.abs(b).max(), 1e-30)


def run_layer(layer, x, dy, params):
    """Output, input gradient and parameter gradients of ``sum(layer(x) * dy)``; and the
    output without a gradient (another branch for 1x1x1 convolutions)."""
    xv = jt.array(x)
    y = layer(xv)
    grads = jt.grad((y * jt.array(dy)).sum(), [xv] + params)
    with jt.no_grad():
        y_eval = layer(jt.array(x)).numpy()
    return [y.numpy(), y_eval] + [g.numpy() for g in grads]


def check_conv_branch(cuda_on_cpu, conv, x, rng):
    """The CUDA branch of ``conv`` against its CPU path: output with and without a
    gradient, input and weight gradients. Positive control: a reshape mistake, the
    channels-last output read with its last two spatial axes swapped, is rejected."""
    with jt.no_grad():
        dy = rng.standard_normal(conv(jt.array(x)).shape).astype(np.float32)
    cpu = run_layer(conv, x, dy, [conv.weight])
    cuda_on_cpu()
    cuda = run_layer(conv, x, dy, [conv.weight])
    for name, a, b in zip(("y", "y without grad", "dx", "dw"), cuda, cpu):
        assert close(a, b), name
    perm = list(range(x.ndim))
    perm[-3], perm[-2] = perm[-2], perm[-3]
    assert not close(cuda[0].transpose(perm).reshape(cuda[0].shape), cpu[0])


CONV3D = [  # in, out, kernel, stride, padding, T, H, W
    (3, 8, 7, (1, 2, 2), 3, 6, 13, 11),  # conv1's shape
    (16, 8, 3, 2, 1, 5, 9, 8),
    (8, 16, 1, (1, 2, 2), 0, 3, 8, 7),   # a strided 1x1x1 downsample: cuBLAS without grad
    (8, 12, 1, 1, 0, 2, 5, 6),
]


@pytest.mark.parametrize("ci,co,k,stride,padding,t,h,w", CONV3D)
def test_conv3d_cuda_branch_equals_cpu_path(cuda_on_cpu, ci, co, k, stride, padding, t, h, w):
    rng = np.random.default_rng(ci + co + k)
    conv = Conv3d(ci, co, k, stride, padding)
    x = rng.standard_normal((2, t, h, w, ci)).astype(np.float32)
    check_conv_branch(cuda_on_cpu, conv, x, rng)


@pytest.mark.parametrize("ci,co,k,stride,padding", [(1, 8, (7, 1), (2, 1), (3, 0)),
                                                    (8, 16, 3, 2, 1), (8, 16, 1, 2, 0)])
def test_conv2d_cuda_branch_equals_cpu_path(cuda_on_cpu, ci, co, k, stride, padding):
    rng = np.random.default_rng(co)
    conv = Conv2d(ci, co, k, stride, padding)
    x = rng.standard_normal((3, 12, 10, ci)).astype(np.float32)
    check_conv_branch(cuda_on_cpu, conv, x, rng)


def _bn_case(shape, axis, seed):
    rng = np.random.default_rng(seed)
    c = shape[axis]
    weight = rng.uniform(0.5, 1.5, c).astype(np.float32)
    bias = rng.standard_normal(c).astype(np.float32)
    xs = [(rng.standard_normal(shape) * 3 + 5).astype(np.float32) for _ in range(2)]
    dys = [rng.standard_normal(shape).astype(np.float32) for _ in range(2)]
    return weight, bias, xs, dys


def _run_bn(shape, axis, relu, weight, bias, xs, dys):
    """Two training steps (outputs, gradients), then the running statistics and an eval
    output."""
    bn = BatchNorm(shape[axis], axis=axis)
    bn.weight.assign(jt.array(weight))
    bn.bias.assign(jt.array(bias))
    bn.train()
    out = []
    for x, dy in zip(xs, dys):
        xv = jt.array(x)
        y = bn(xv, relu=relu)
        out += [y.numpy()] + [g.numpy() for g in
                              jt.grad((y * jt.array(dy)).sum(), [xv, bn.weight, bn.bias])]
    bn.eval()
    out += [bn.running_mean.numpy(), bn.running_var.numpy(), bn(jt.array(xs[0])).numpy()]
    return out, int(bn.num_batches_tracked.numpy()[0])


BN_NAMES = ["y", "dx", "dweight", "dbias"] * 2 + ["running_mean", "running_var", "eval y"]
BN_CASES = [((4, 6, 5, 7), 1, False), ((2, 3, 4, 5, 6), 4, True), ((9, 5), 1, False),
            ((2, 5, 3, 4), 3, True)]


@pytest.mark.parametrize("shape,axis,relu", BN_CASES)
def test_batchnorm_graph_path_equals_cpu_kernels(cuda_on_cpu, shape, axis, relu):
    """CUDA's graph path (float64 statistics as Jittor graph ops) against the CPU kernels:
    outputs, gradients, running statistics over two steps, eval output."""
    case = _bn_case(shape, axis, len(shape) + axis)
    cpu, steps_cpu = _run_bn(shape, axis, relu, *case)
    cuda_on_cpu()
    cuda, steps_cuda = _run_bn(shape, axis, relu, *case)
    assert steps_cpu == steps_cuda == 2
    for name, a, b in zip(BN_NAMES, cuda, cpu):
        assert close(a, b, 2e-6 if name.endswith("y") else 1e-5), name
    # positive control: normalising with the unbiased variance (n / (n - 1)) is rejected
    n = int(np.prod(shape)) // shape[axis]
    axes = tuple(i for i in range(len(shape)) if i != axis)
    x = case[2][0].astype(np.float64)
    mean, var = x.mean(axes, keepdims=True), x.var(axes, keepdims=True) * n / (n - 1)
    cshape = [shape[axis] if i == axis else 1 for i in range(len(shape))]
    wrong = (x - mean) / np.sqrt(var + 1e-5) * case[0].reshape(cshape) + case[1].reshape(cshape)
    assert not close(np.maximum(wrong, 0) if relu else wrong, cpu[0], 2e-6)


@pytest.mark.parametrize("shape,axis,relu", BN_CASES[:2])
def test_batchnorm_mpi_branch_uses_the_global_batch(cuda_on_cpu, shape, axis, relu):
    """Three processes holding the same shard must give that shard's slice of BatchNorm
    over their concatenation (the global batch): outputs, input gradient, a third of the
    weight and bias gradients (each process's part, which training all-reduces), and
    running_var corrected by the global count N / (N - 1)."""
    world = 3
    weight, bias, xs, dys = _bn_case(shape, axis, 7)
    glob = lambda arrays: [np.concatenate([a] * world) for a in arrays]  # noqa: E731
    full, _ = _run_bn((shape[0] * world,) + shape[1:], axis, relu, weight, bias,
                      glob(xs), glob(dys))
    expected = []
    for name, a in zip(BN_NAMES, full):
        expected.append(a[:shape[0]] if name in ("y", "dx", "eval y") else
                        a / world if name in ("dweight", "dbias") else a)
    cuda_on_cpu(world)
    mpi, _ = _run_bn(shape, axis, relu, weight, bias, xs, dys)
    for name, a, b in zip(BN_NAMES, mpi, expected):
        assert close(a, b, 2e-6 if name.endswith("y") else 1e-5), name
    # positive control: one process's statistics (count n, not world * n) are rejected
    cuda_on_cpu(1)
    local, _ = _run_bn(shape, axis, relu, weight, bias, xs, dys)
    assert not close(local[BN_NAMES.index("running_var")],
                     expected[BN_NAMES.index("running_var")], 1e-5)


POOLS = [  # shape, axes, kernel, stride, padding, torch's pooling
    ((2, 5, 9, 8, 3), (1, 2, 3), (3, 3, 3), (2, 2, 2), (1, 1, 1), "max_pool3d"),  # resnet3d
    ((2, 3, 4, 5, 2), (1, 2, 3), (3, 4, 5), (1, 1, 1), (0, 0, 0), "max_pool3d"),  # whole input
    ((3, 9, 7, 4), (1, 2), (3, 3), (2, 2), (1, 1), "max_pool2d"),                 # resnet2d
]


@pytest.mark.parametrize("data", ["normal", "relu", "few values"])
@pytest.mark.parametrize("shape,axes,kernel,stride,padding,pool", POOLS)
def test_gather_max_pool_equals_cpu_kernels_and_pytorch(cuda_on_cpu, data, shape, axes,
                                                        kernel, stride, padding, pool):
    """The gather-max pooling and its gradient, on ties too (the zeros after a ReLU, few
    distinct values): the gradient of each window goes to its first maximum."""
    rng = np.random.default_rng(len(shape) + len(data))
    x = rng.standard_normal(shape).astype(np.float32)
    if data == "relu":
        x = np.maximum(x - 1.5, 0)  # mostly zeros: all-zero windows
    elif data == "few values":
        x = rng.integers(0, 3, shape).astype(np.float32)

    def run():
        xv = jt.array(x)
        y = max_pool(xv, kernel, stride, padding, axes)
        dy = jt.array(np.cos(np.arange(int(np.prod(y.shape)))).reshape(y.shape).astype(np.float32))
        return y.numpy(), jt.grad((y * dy).sum(), xv).numpy(), dy.numpy()

    y_cpu, g_cpu, dy = run()
    cuda_on_cpu()
    y_cuda, g_cuda, _ = run()
    perm = (0, x.ndim - 1) + tuple(range(1, x.ndim - 1))
    inv = tuple(np.argsort(perm))
    xt = torch.from_numpy(x).permute(*perm).requires_grad_()
    yt = getattr(torch.nn.functional, pool)(xt, kernel, stride, padding)
    (yt * torch.from_numpy(dy).permute(*perm)).sum().backward()
    np.testing.assert_array_equal(y_cuda, y_cpu)
    np.testing.assert_array_equal(y_cuda, yt.detach().permute(*inv).numpy())
    assert close(g_cuda, g_cpu, 1e-6) and close(g_cuda, xt.grad.permute(*inv).numpy(), 1e-6)
    # positive control: Jittor's own gradient of the gather-max gives every tie the
    # gradient, which must be rejected wherever a window holds its maximum twice
    pool_op = layers._GatherMaxPool(x.shape, kernel, stride, padding, axes)
    xv = jt.array(x)
    windows = pool_op.windows(xv)
    plain = jt.grad((windows.max(dims=pool_op.window_dims) * jt.array(dy)).sum(), xv)
    w = windows.numpy().reshape(y_cpu.shape + (-1,))
    tied = ((w == w.max(-1, keepdims=True)).sum(-1) > 1).any()
    assert tied == (data != "normal") or data == "relu"
    assert close(plain.numpy(), g_cpu, 1e-6) != tied


class NwhcCudnn(CpuCudnn):
    """A wrong variant: the 2D convolution's NHWC output read with H and W swapped."""

    @staticmethod
    def cudnn_conv(*args, **kw):
        y = CpuCudnn.cudnn_conv(*args, **kw)
        return y.transpose(0, 2, 1, 3).reshape(y.shape)


#: Runs of the CPU path from weights one unit in the last place away, whose distance to the
#: plain run is the CPU path's own float32 noise on each gradient (see the test).
NOISE_RUNS = 2


def one_ulp_away(state, rng):
    """``state`` with every float32 array moved by one unit in the last place, up or down at
    random: the same weights in another rounding pattern."""
    return {k: np.nextafter(v, rng.choice([-1.0, 1.0], v.shape).astype(np.float32) * np.inf)
            if v.dtype == np.float32 else v for k, v in state.items()}


def test_model_cuda_branches_equal_cpu_path(cuda_on_cpu, monkeypatch):
    """A small VAANet, training mode, every CUDA branch at once: the logits, and the
    gradient of every trainable tensor within its bound, in relative L2 (floored at 1e-4
    of the largest gradient norm, as the biases feeding a BatchNorm have a true gradient of
    0): max(1e-3, 2 x the CPU path's own float32 noise on that tensor). That noise is the
    largest distance of the CPU path's gradient when the weights move by one unit in the
    last place (``NOISE_RUNS`` runs): after a training-mode BatchNorm a rounding difference
    flips a ReLU here and there, which moves the audio ResNet's gradients by up to ~2e-3 on
    some CPUs (rounding differs with the vector width), whichever branch rounds. Jittor's
    autodiff of the graph BatchNorm gave 6e-3 to 8e-2 in the audio ResNet."""
    from models.vaanet import VAANet
    jt.set_global_seed(0)
    model = VAANet(snippet_duration=4, sample_size=32, n_classes=4, seq_len=2,
                   resnet_depth=10)
    rng = np.random.default_rng(0)
    visual = rng.integers(0, 256, (2, 2, 3, 4, 32, 32), dtype=np.uint8)
    audio = (rng.standard_normal((2, 4096, 32)) * 20).astype(np.float32)
    params = [p for p in model.parameters() if p.requires_grad]
    names = [k for k, v in model.state_dict().items() if v.requires_grad]
    state = {k: v.numpy().copy() for k, v in model.state_dict().items()}

    def run(weights=state):
        model.load_parameters(weights)  # the same running statistics each time
        model.train()
        logits = model(jt.array(visual), jt.array(audio))[0]
        grads = jt.grad((logits * jt.array(np.arange(8.0).reshape(2, 4))).sum(), params)
        return logits.numpy(), {k: g.numpy() for k, g in zip(names, grads)}

    logits_cpu, grads_cpu = run()
    floor = 1e-4 * max(np.linalg.norm(g) for g in grads_cpu.values())

    def distances(grads):
        return {k: float(np.linalg.norm(grads[k] - g) / max(np.linalg.norm(g), floor))
                for k, g in grads_cpu.items()}

    noise = dict.fromkeys(grads_cpu, 0.0)
    for _ in range(NOISE_RUNS):
        moved = distances(run(one_ulp_away(state, rng))[1])
        noise = {k: max(v, moved[k]) for k, v in noise.items()}
    bound = {k: max(1e-3, 2 * n) for k, n in noise.items()}

    def beyond(grads):
        """``[(distance / bound, name)]`` over 1, worst first."""
        return sorted(((d / bound[k], k) for k, d in distances(grads).items()
                       if d > bound[k]), reverse=True)

    cuda_on_cpu()
    logits_cuda, grads_cuda = run()
    assert close(logits_cuda, logits_cpu, 1e-4)
    assert beyond(grads_cuda) == []
    # positive control: one reshape mistake in the audio stream's convolutions
    monkeypatch.setattr(CudaOnCpu, "cudnn", NwhcCudnn())
    assert len(beyond(run()[1])) > 10
