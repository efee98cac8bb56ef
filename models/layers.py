"""Layers whose Jittor defaults differ from PyTorch in speed or in value.

- ``BatchNorm``: PyTorch's semantics exactly. Jittor's own BatchNorm takes the variance as
  E[x^2] - E[x]^2 in float32 and stores the biased variance as running_var; PyTorch uses the
  biased variance to normalise but the unbiased one (n / (n - 1)) for running_var. Batch
  statistics are float64 sums, since a float32 mean over the ~25,000 values per channel of
  the backbone loses ~1e-3 relative on the CPU. In training on the CPU it runs as the OpenMP
  kernels of ``models/kernels/batchnorm.py``, with an optional residual added and ReLU
  applied in the same passes.
- ``Conv3d`` / ``Conv2d``: convolutions on channels-last tensors (``[N, T, H, W, C]``,
  ``[N, H, W, C]``), one oneDNN call on the CPU (``models/kernels/onednn.py``; Jittor's
  stock Conv3d is ~100x slower there) and one cuDNN call on CUDA. A 1x1x1 convolution (2/3
  of a bottleneck's) is one matrix product, [N*T*H*W, C_in] x [C_in, C_out]: ~1.8x faster
  than oneDNN's 1x1 convolution. With channels last no transposes are needed between layers.
- ``max_pool``: max pooling with implicit -inf padding, which also accepts a window as large
  as its input (Jittor's ``nn.Pool`` refuses that); OpenMP kernels on the CPU, one fused
  gather-max elsewhere. Either way the gradient goes to the first maximum of each window, as
  in PyTorch.
- ``Conv1d``/``Linear``: the 1x1 Conv1d and Linear of PyTorch, with PyTorch's default init
  (or, for a Conv1d, the Kaiming-normal one the release gives its visual heads).

Parameter names and shapes are PyTorch's, so state dicts move between the two unchanged.

Which branch a layer takes (CUDA, MPI, CPU) and the vendor ops of the CUDA branch come from
``models.backend.device``, asked at each call.
"""
import math

from core.jittor_setup import jt
from jittor import nn

from models import backend
from models.kernels import needs_grad
from models.kernels.batchnorm import batch_norm_train
from models.kernels.maxpool import max_pool_ndhwc
from models.kernels.onednn import conv3d_ndhwc, onednn_ops


def kaiming_normal_fan_out(var):
    """In place: normal(0, sqrt(2 / fan_out)), PyTorch's kaiming_normal_(mode='fan_out')."""
    fan_out = var.shape[0] * int(math.prod(var.shape[2:]))
    var.assign(jt.randn(var.shape) * math.sqrt(2.0 / fan_out))


def torch_default_uniform(var, fan_in):
    """In place: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), PyTorch's default for conv and linear."""
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    var.assign(jt.rand(var.shape) * (2 * bound) - bound)


def default_bias(n, fan_in):
    """A new bias of ``n`` values drawn as PyTorch draws a new layer's."""
    bias = jt.zeros(n)
    torch_default_uniform(bias, fan_in)
    return bias


class BatchNorm(nn.Module):
    """BatchNorm over axis 1 of an input of any rank (BatchNorm1d/2d/3d), or over ``axis``.

    ``axis=4`` serves the channels-last ``[N, T, H, W, C]`` clips of ``Conv3d``.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, axis=1):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self._axis = axis
        self.weight = jt.ones(num_features)
        self.bias = jt.zeros(num_features)
        self.running_mean = jt.zeros(num_features).stop_grad()
        self.running_var = jt.ones(num_features).stop_grad()
        self.num_batches_tracked = jt.zeros(1, dtype="int64").stop_grad()

    def _channel_shape(self, ndim):
        return [self.num_features if i == self._axis else 1 for i in range(ndim)]

    def execute(self, x, relu=False, residual=None):
        """Normalise ``x``, add ``residual`` (a tensor like ``x``) if given, then apply ReLU
        if ``relu``; on the CPU all in the kernels' passes."""
        shape = self._channel_shape(x.ndim)
        if not self.is_training():
            scale = self.weight / (self.running_var + self.eps).sqrt()
            shift = self.bias - self.running_mean * scale
            y = x * scale.reshape(shape) + shift.reshape(shape)
            return _add_relu(y, residual, relu)
        n = x.numel() // self.num_features
        unbias = n / (n - 1) if n > 1 else None
        dev = backend.device
        if dev.mpi or dev.cuda:  # graph ops; under MPI the global batch's statistics
            fuse_relu = relu and residual is None
            train = _GraphBatchNormTrain(self._axis, self.eps, fuse_relu,
                                         dev.all_reduce if dev.mpi else None)
            y, mean, var = train(x, self.weight, self.bias)
            if not fuse_relu:
                y = _add_relu(y, residual, relu)
            if dev.mpi:
                unbias = (train.count / (train.count - 1)).stop_grad()
        else:  # the CPU kernels, same arithmetic
            outer = int(math.prod(x.shape[:self._axis]))
            y, mean, var = batch_norm_train(_as3(x, outer, self.num_features), self.weight,
                                            self.bias, self.eps, relu,
                                            _as3(residual, outer, self.num_features))
            y = y.reshape(x.shape)
        if unbias is not None:
            m = self.momentum
            self.running_mean.update(
                ((1 - m) * self.running_mean + m * mean.reshape(-1).float32()).stop_grad())
            self.running_var.update(
                ((1 - m) * self.running_var
                 + m * (var.reshape(-1) * unbias).float32()).stop_grad())
            self.num_batches_tracked.update((self.num_batches_tracked + 1).stop_grad())
        return y


class _GraphBatchNormTrain(jt.Function):
    """Training-mode BatchNorm as Jittor graph ops (CUDA; MPI) with the CPU kernels'
    arithmetic: float64 channel sums, ``y = (x - float32(mean)) * float32(weight /
    sqrt(var + eps)) + bias`` in float32, and the backward pass written out in float64.
    Jittor's autodiff of the forward would add float32 terms that nearly cancel (dy * scale
    and its channel mean): 1e-2 relative error in a ResNet's deeper gradients.

    With ``all_reduce`` (MPI) the sums are those of the global batch, every process's shard
    (as PyTorch's SyncBatchNorm); the weight and bias gradients stay each process's part,
    which training all-reduces with the other parameters'. ``count``: the batch size (a Var
    under MPI)."""

    def __init__(self, axis, eps, relu, all_reduce=None):
        self.axis, self.eps, self.relu, self.all_reduce = axis, eps, relu, all_reduce

    def _global(self, *sums):
        """Per-channel ``sums``, over every process under MPI."""
        if self.all_reduce is None:
            return list(sums)
        c = sums[0].shape[0]
        total = self.all_reduce(jt.concat(list(sums)))
        return [total[i * c:(i + 1) * c] for i in range(len(sums))]

    def execute(self, x, weight, bias):
        c = x.shape[self.axis]
        self.axes = tuple(i for i in range(x.ndim) if i != self.axis)
        self.shape = [c if i == self.axis else 1 for i in range(x.ndim)]
        xd = x.float64()
        self.count = x.numel() // c
        if self.all_reduce is not None:
            from core.distributed import float64_var
            total = self.all_reduce(jt.concat([xd.sum(dims=self.axes),
                                               float64_var([self.count])]))
            sums, self.count = total[:c], total[c:]
        else:
            sums = xd.sum(dims=self.axes)
        mean = (sums / self.count).reshape(self.shape)
        var = self._global(((xd - mean) ** 2).sum(dims=self.axes))[0] / self.count
        invstd = (1.0 / (var + self.eps).sqrt()).reshape(self.shape)
        y = (x - mean.float32()) * (weight.reshape(self.shape).float64() * invstd).float32() \
            + bias.reshape(self.shape)
        if self.relu:
            y = nn.relu(y)
        self.saved = (x, mean, invstd, weight, y if self.relu else None)
        return y, mean.reshape(-1), var

    def grad(self, dy, *_):
        if dy is None:
            return None, None, None
        x, mean, invstd, weight, y = self.saved
        g = dy.float64()
        if self.relu:
            g = g * (y > 0)
        xc = x.float64() - mean
        local = [g.sum(dims=self.axes), (g * xc).sum(dims=self.axes)]
        dweight = (local[1] * invstd.reshape(-1)).float32()  # sum(dy * xhat)
        dbias = local[0].float32()
        sg, sgx = self._global(*local)
        dmean = (sg / self.count).reshape(self.shape)
        dproj = (sgx / self.count).reshape(self.shape) * invstd * invstd
        dx = (g - dmean - xc * dproj) * (weight.reshape(self.shape).float64() * invstd)
        return dx.float32(), dweight, dbias


def _as3(x, outer, channels):
    """``x`` viewed ``[outer, C, inner]`` for the kernels (None stays None)."""
    return None if x is None else x.reshape(outer, channels, -1)


def _add_relu(y, residual, relu):
    y = y + residual if residual is not None else y
    return nn.relu(y) if relu else y


class Conv3d(nn.Module):
    """PyTorch's Conv3d (no bias) on channels-last clips ``[N, T, H, W, C]``.

    One oneDNN 3D convolution on the CPU (``models/kernels/onednn.py``), one cuDNN 3D
    convolution in NDHWC layout on CUDA, and a 1x1x1 convolution as one matrix product on
    either. Only where neither library is there does it fall back to Jittor's ``conv2d``
    summed over the temporal taps.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0):
        super().__init__()
        self.kernel_size = _triple(kernel_size)
        self.stride = _triple(stride)
        self.padding = _triple(padding)
        self.weight = jt.zeros((out_channels, in_channels) + self.kernel_size)
        kaiming_normal_fan_out(self.weight)

    def execute(self, x):
        if self.kernel_size == (1, 1, 1) and self.padding == (0, 0, 0):
            return self._pointwise(x, direct=not needs_grad(x, self.weight))
        dev = backend.device
        if dev.cuda and dev.cudnn is not None:
            return dev.cudnn.cudnn_conv3d(x, self.weight, *self.stride, *self.padding,
                                          1, 1, 1, 1, "ndhwc")
        if not dev.cuda and onednn_ops() is not None:
            return conv3d_ndhwc(x, self.weight, self.stride, self.padding)
        return self._temporal_sum(x)

    def _pointwise(self, x, direct):
        """1x1x1 convolution: [N*T*H*W, C_in] x [C_out, C_in]^T over every (strided)
        position. BLAS reads the weight transposed in place: a transposed copy of every
        weight would be built ahead of the layers, all alive at once."""
        st, sh, sw = self.stride
        if (st, sh, sw) != (1, 1, 1):
            x = x[:, ::st, ::sh, ::sw]
        n, t, h, w, c = x.shape
        weight = self.weight.reshape(self.weight.shape[0], c)
        x2 = x.reshape(n * t * h * w, c)
        dev = backend.device
        if direct and dev.cuda and dev.cublas is not None:
            y = dev.cublas.cublas_matmul(x2, weight, 0, 1)
        elif direct and not dev.cuda and jt.compile_extern.mkl_ops is not None:
            y = jt.mkl_ops.mkl_matmul(x2, weight, False, True)
        else:
            y = jt.matmul(x2, weight.transpose(1, 0))
        return y.reshape(n, t, h, w, -1)

    def _temporal_sum(self, x):
        """The portable path: a sum over the temporal taps of 2D convolutions."""
        n, t, h, w, c = x.shape
        kt, st, pt = self.kernel_size[0], self.stride[0], self.padding[0]
        t_out = (t + 2 * pt - kt) // st + 1
        out = None
        for k in range(kt):
            # Output frame i reads input frame i*st + k - pt; frames outside [0, t) are zero.
            first = k - pt
            valid = [i for i in range(t_out) if 0 <= i * st + first < t]
            if not valid:
                continue
            lo, hi = valid[0], valid[-1] + 1
            start = lo * st + first
            frames = x[:, start:start + (hi - lo - 1) * st + 1:st]
            frames = frames.reshape(n * (hi - lo), h, w, c).transpose(0, 3, 1, 2)
            y = nn.conv2d(frames, self.weight[:, :, k], stride=self.stride[1:],
                          padding=self.padding[1:]).transpose(0, 2, 3, 1)
            y = y.reshape((n, hi - lo) + tuple(y.shape[1:]))
            if lo > 0 or hi < t_out:
                y = _pad_axis(y, 1, lo, t_out - hi, 0.0)
            out = y if out is None else out + y
        return out


def max_pool(x, kernel_size, stride, padding, axes):
    """Max pooling along ``axes`` (one kernel/stride/padding per axis), -inf padding.

    Channels-last inputs on the CPU (``[N, T, H, W, C]`` over axes 1-3, ``[N, H, W, C]``
    over axes 1-2) go to the OpenMP kernels of ``models/kernels/maxpool.py``. Elsewhere:
    one gather of every window (positions outside read -inf) reduced by max, which Jittor
    fuses into one kernel (``_GatherMaxPool``)."""
    axes = tuple(axes)
    if not backend.device.cuda and x.dtype == "float32" and axes == tuple(range(1, x.ndim - 1)):
        pad = 5 - x.ndim  # 2D pooling is 3D pooling of depth 1
        x5 = x.reshape(x.shape[:1] + (1,) * pad + tuple(x.shape[1:]))
        y = max_pool_ndhwc(x5, (1,) * pad + tuple(kernel_size), (1,) * pad + tuple(stride),
                           (0,) * pad + tuple(padding))
        return y.reshape(y.shape[:1] + tuple(y.shape[1 + pad:]))
    pool = _GatherMaxPool(x.shape, kernel_size, stride, padding, axes)
    return pool(x) if needs_grad(x) else pool.windows(x).max(dims=pool.window_dims)


class _GatherMaxPool(jt.Function):
    """Gather-max pooling whose gradient goes to the first maximum of each window in window
    order, as in PyTorch (Jittor's own gradient of max gives it to every tie: to each zero
    of an all-zero window, say). The forward pass also finds, in a second fused reduction,
    the window offset of that maximum, and keeps only it (int32, one per output)."""

    def __init__(self, x_shape, kernel_size, stride, padding, axes):
        self.x_shape, ndim = tuple(x_shape), len(x_shape)
        self.shape, self.index = list(x_shape), [f"i{d}" for d in range(ndim)]
        self.window, self.back = [], list(self.index)
        sizes = [int(math.prod(kernel_size[j + 1:])) for j in range(len(axes))]
        outputs = ",".join(self.index)
        for j, (axis, k, s, p) in enumerate(zip(axes, kernel_size, stride, padding)):
            self.shape[axis] = (x_shape[axis] + 2 * p - k) // s + 1
            self.index[axis] = f"i{axis}*{s}+i{ndim + j}-{p}"
            self.back[axis] = f"i{axis}*{s}+@e0({outputs})/{sizes[j]}%{k}-{p}"
            self.window.append(k)
        self.window_dims = tuple(range(ndim, ndim + len(axes)))
        self.sizes = sizes

    def windows(self, x):
        return x.reindex(self.shape + self.window, self.index, overflow_value=float("-inf"))

    def execute(self, x):
        windows = self.windows(x)
        y = windows.max(dims=self.window_dims)
        offset = sum(jt.index(windows.shape, d) * m for d, m in zip(self.window_dims, self.sizes))
        at_max = windows == y.broadcast(windows.shape, self.window_dims)
        self.first = jt.ternary(at_max, offset, math.prod(self.window)).min(dims=self.window_dims)
        return y

    def grad(self, dy):
        # a window that is all padding points outside x, which reindex_reduce skips
        return dy.reindex_reduce("add", self.x_shape, self.back, extras=[self.first])


def _pad_axis(x, axis, before, after, value):
    parts = []
    for count in (before, after):
        shape = list(x.shape)
        shape[axis] = count
        parts.append(jt.full(shape, value, dtype=x.dtype) if count else None)
    return jt.concat([p for p in (parts[0], x, parts[1]) if p is not None], dim=axis)


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _triple(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v, v)


class Conv2d(nn.Module):
    """PyTorch's Conv2d without bias, on channels-last images ``[N, H, W, C]``; ``init`` is
    'fan_out' (torchvision's ResNets) or 'default' (PyTorch's default for a new layer)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 init="fan_out"):
        super().__init__()
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride)
        self.padding = _pair(padding)
        self.weight = jt.zeros((out_channels, in_channels) + self.kernel_size)
        if init == "fan_out":
            kaiming_normal_fan_out(self.weight)
        else:
            torch_default_uniform(self.weight, in_channels * int(math.prod(self.kernel_size)))

    def execute(self, x):
        dev = backend.device
        if dev.cuda and dev.cudnn is not None:
            return dev.cudnn.cudnn_conv(x, self.weight, *self.stride, *self.padding,
                                        1, 1, 1, "acdb", "oihw", "acdb")
        if not dev.cuda and onednn_ops() is not None:
            # as a 3D convolution of depth 1
            n, h, w, c = x.shape
            o = self.weight.shape[0]
            y = conv3d_ndhwc(x.reshape(n, 1, h, w, c),
                             self.weight.reshape(o, c, 1, *self.kernel_size),
                             (1,) + self.stride, (0,) + self.padding)
            return y.reshape(y.shape[0], *y.shape[2:])
        y = nn.conv2d(x.transpose(0, 3, 1, 2), self.weight, stride=self.stride,
                      padding=self.padding)
        return y.transpose(0, 2, 3, 1)


class Conv1d(nn.Module):
    """PyTorch's Conv1d with kernel size 1 on ``[N, C, L]``, as one 2D matrix product over
    every position (a batched product would be computed as a broadcast and a reduction).

    ``init`` is the weight's: 'default' (PyTorch's for a new layer, U(+-1/sqrt(fan_in))) or
    'fan_out' (Kaiming-normal, what the release gives the visual heads). The bias always
    gets PyTorch's default: the release re-initialises weights only."""

    def __init__(self, in_channels, out_channels, bias=True, init="default"):
        super().__init__()
        self.weight = jt.zeros((out_channels, in_channels, 1))
        if init == "fan_out":
            kaiming_normal_fan_out(self.weight)
        else:
            torch_default_uniform(self.weight, in_channels)
        self.bias = default_bias(out_channels, in_channels) if bias else None

    def execute(self, x):
        n, c, length = x.shape
        rows = x.transpose(0, 2, 1).reshape(n * length, c)
        y = jt.matmul(rows, self.weight[:, :, 0].transpose(1, 0))
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(n, length, -1).transpose(0, 2, 1)


class Linear(nn.Module):
    """PyTorch's Linear, with its default initialisation."""

    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        self.weight = jt.zeros((out_features, in_features))
        torch_default_uniform(self.weight, in_features)
        self.bias = default_bias(out_features, in_features) if bias else None

    def execute(self, x):
        y = jt.matmul(x, self.weight.transpose(1, 0))
        return y + self.bias if self.bias is not None else y
