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
  as its input (Jittor's ``nn.Pool`` refuses that); OpenMP kernels on the CPU.
- ``Conv1d``/``Linear``: the 1x1 Conv1d and Linear of PyTorch, with PyTorch's default init.

Parameter names and shapes are PyTorch's, so state dicts move between the two unchanged.
"""
import math

from core.jittor_setup import jt
from jittor import nn

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

    def _mpi_moments(self, xd, axes, n):
        """Under MPI (``mpirun -np N``): mean and biased variance of the *global* batch (all
        ranks' shards) and the unbiased factor N / (N - 1), from per-rank float64 sums
        combined with ``mpi_all_reduce`` (whose gradient is an all-reduce of the incoming
        gradient, so trainable BatchNorms get the global-batch gradient)."""
        from core.distributed import float64_var
        c = self.num_features
        packed = jt.concat([xd.sum(dims=axes).reshape(-1), float64_var([n])])
        total = packed.mpi_all_reduce("add")
        count = total[c:c + 1]
        mean = (total[:c] / count).reshape(self._channel_shape(xd.ndim))
        dev = ((xd - mean) ** 2).sum(dims=axes).reshape(-1).mpi_all_reduce("add")
        var = (dev / count).reshape(self._channel_shape(xd.ndim))
        return mean, var, (count / (count - 1)).stop_grad()

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
        if jt.in_mpi and jt.world_size > 1:  # statistics of the global batch
            y, mean, var, unbias = self._graph_train(x, self._mpi_moments, relu, residual)
        elif jt.flags.use_cuda:
            y, mean, var, _ = self._graph_train(x, self._local_moments, relu, residual)
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

    def _local_moments(self, xd, axes, n):
        mean = xd.mean(dims=axes, keepdims=True)
        var = ((xd - mean) ** 2).mean(dims=axes, keepdims=True)
        return mean, var, None

    def _graph_train(self, x, moments, relu, residual):
        """Training-mode normalisation as Jittor graph ops (CUDA, MPI), float64 statistics
        from ``moments(x_float64, axes, n) -> (mean, biased var, unbias factor)``."""
        shape = self._channel_shape(x.ndim)
        axes = tuple(i for i in range(x.ndim) if i != self._axis)
        mean, var, unbias = moments(x.float64(), axes, x.numel() // self.num_features)
        scale = (self.weight.reshape(shape).float64() / (var + self.eps).sqrt()).float32()
        y = (x - mean.float32()) * scale + self.bias.reshape(shape)
        return _add_relu(y, residual, relu), mean, var, unbias


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
        if jt.flags.use_cuda and jt.compile_extern.cudnn is not None:
            return jt.cudnn.ops.cudnn_conv3d(x, self.weight, *self.stride, *self.padding,
                                             1, 1, 1, 1, "ndhwc")
        if not jt.flags.use_cuda and onednn_ops() is not None:
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
        if direct and jt.flags.use_cuda and jt.compile_extern.cublas_ops is not None:
            y = jt.compile_extern.cublas_ops.cublas_matmul(x2, weight, 0, 1)
        elif direct and not jt.flags.use_cuda and jt.compile_extern.mkl_ops is not None:
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
    fuses into one kernel."""
    axes = tuple(axes)
    if not jt.flags.use_cuda and x.dtype == "float32" and axes == tuple(range(1, x.ndim - 1)):
        pad = 5 - x.ndim  # 2D pooling is 3D pooling of depth 1
        x5 = x.reshape(x.shape[:1] + (1,) * pad + tuple(x.shape[1:]))
        y = max_pool_ndhwc(x5, (1,) * pad + tuple(kernel_size), (1,) * pad + tuple(stride),
                           (0,) * pad + tuple(padding))
        return y.reshape(y.shape[:1] + tuple(y.shape[1 + pad:]))
    shape, index, window = list(x.shape), [f"i{d}" for d in range(x.ndim)], []
    for j, (axis, k, s, p) in enumerate(zip(axes, kernel_size, stride, padding)):
        shape[axis] = (x.shape[axis] + 2 * p - k) // s + 1
        index[axis] = f"i{axis}*{s}+i{x.ndim + j}-{p}"
        window.append(k)
    windows = x.reindex(shape + window, index, overflow_value=float("-inf"))
    return windows.max(dims=tuple(range(x.ndim, x.ndim + len(window))))


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
        if jt.flags.use_cuda and jt.compile_extern.cudnn is not None:
            return jt.cudnn.ops.cudnn_conv(x, self.weight, *self.stride, *self.padding,
                                           1, 1, 1, "acdb", "oihw", "acdb")
        if not jt.flags.use_cuda and onednn_ops() is not None:
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
    every position (a batched product would be computed as a broadcast and a reduction)."""

    def __init__(self, in_channels, out_channels, bias=True):
        super().__init__()
        self.weight = jt.zeros((out_channels, in_channels, 1))
        kaiming_normal_fan_out(self.weight)
        self.bias = jt.zeros(out_channels) if bias else None

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
        self.bias = None
        if bias:
            self.bias = jt.zeros(out_features)
            torch_default_uniform(self.bias, in_features)

    def execute(self, x):
        y = jt.matmul(x, self.weight.transpose(1, 0))
        return y + self.bias if self.bias is not None else y
