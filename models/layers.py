"""Layers whose Jittor defaults differ from PyTorch in speed or in value.

- ``BatchNorm``: PyTorch's semantics exactly. Jittor's own BatchNorm takes the variance as
  E[x^2] - E[x]^2 in float32 and stores the biased variance as running_var; PyTorch uses the
  biased variance to normalise but the unbiased one (n / (n - 1)) for running_var. Batch
  statistics are accumulated in float64, since a float32 mean over the ~25,000 values per
  channel of the backbone loses ~1e-3 relative on the CPU.
- ``Conv3d``: a 3D convolution on channels-last clips ``[N, T, H, W, C]``, computed as a sum
  over its temporal taps of 2D convolutions that run on oneDNN (CPU) or cuDNN (CUDA) in
  NHWC layout; Jittor's stock Conv3d is ~100x slower on the CPU. A 1x1x1 convolution (2/3 of
  a bottleneck's) is one matrix product, [N*T*H*W, C_in] x [C_in, C_out]: ~1.8x faster than
  oneDNN's 1x1 convolution on NCHW frames, which reorders its input and output every call.
  With channels last every frame is a contiguous NHWC image, so no transposes are needed
  between layers. conv1 (3 input channels) gathers its 7 taps into channels instead.
- ``max_pool``: max pooling with implicit -inf padding, which also accepts a window as large
  as its input (Jittor's ``nn.Pool`` refuses that).
- ``Conv1d``/``Linear``: the 1x1 Conv1d and Linear of PyTorch, with PyTorch's default init.

Parameter names and shapes are PyTorch's, so state dicts move between the two unchanged.
"""
import math

from core.jittor_setup import jt
from jittor import nn


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

    def execute(self, x):
        shape = self._channel_shape(x.ndim)
        if self.is_training():
            axes = tuple(i for i in range(x.ndim) if i != self._axis)
            n = x.numel() // self.num_features
            xd = x.float64()
            if jt.in_mpi and jt.world_size > 1:  # statistics of the global batch
                mean, var, unbias = self._mpi_moments(xd, axes, n)
            else:
                mean = xd.mean(dims=axes, keepdims=True)
                var = ((xd - mean) ** 2).mean(dims=axes, keepdims=True)
                unbias = n / (n - 1) if n > 1 else None
            if unbias is not None:
                m = self.momentum
                self.running_mean.update(
                    ((1 - m) * self.running_mean + m * mean.reshape(-1).float32()).stop_grad())
                self.running_var.update(
                    ((1 - m) * self.running_var
                     + m * (var.reshape(-1) * unbias).float32()).stop_grad())
                self.num_batches_tracked.update((self.num_batches_tracked + 1).stop_grad())
            scale = (self.weight.reshape(shape).float64() / (var + self.eps).sqrt()).float32()
            return (x - mean.float32()) * scale + self.bias.reshape(shape)
        scale = self.weight / (self.running_var + self.eps).sqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale.reshape(shape) + shift.reshape(shape)


# Conv3d gathers its temporal taps into channels when kt * C_in is at most this (conv1).
TEMPORAL_IM2COL_MAX_CHANNELS = 32


class Conv3d(nn.Module):
    """PyTorch's Conv3d (no bias) on channels-last clips ``[N, T, H, W, C]``."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0):
        super().__init__()
        self.kernel_size = _triple(kernel_size)
        self.stride = _triple(stride)
        self.padding = _triple(padding)
        self.weight = jt.zeros((out_channels, in_channels) + self.kernel_size)
        kaiming_normal_fan_out(self.weight)

    def execute(self, x):
        if self.kernel_size == (1, 1, 1) and self.padding == (0, 0, 0):
            return self._pointwise(x)
        if self.kernel_size[0] * x.shape[-1] <= TEMPORAL_IM2COL_MAX_CHANNELS:
            return self._temporal_im2col(x)
        n, t, h, w, c = x.shape
        kt = self.kernel_size[0]
        st = self.stride[0]
        pt = self.padding[0]
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
            y = conv2d_nhwc(frames.reshape(n * (hi - lo), h, w, c), self.weight[:, :, k],
                            self.stride[1:], self.padding[1:])
            y = y.reshape((n, hi - lo) + tuple(y.shape[1:]))
            if lo > 0 or hi < t_out:
                y = _pad_axis(y, 1, lo, t_out - hi, 0.0)
            out = y if out is None else out + y
        return out

    def _temporal_im2col(self, x):
        """For few input channels (conv1: 3 channels, 7 taps): gather the ``kt`` input frames
        of every output frame side by side along channels, ``[N, T', H, W, kt*C]`` (zeros
        outside the clip), and run one 2D convolution with ``kt*C`` input channels. Summing
        7 taps keeps their 7 full-size outputs (and padded copies) alive at once: this cut
        the backbone's peak working memory from ~760 to ~245 MB at 4 clips (speed about the
        same). Its rounding is that of a direct 3D convolution (PyTorch's own float32 conv1
        error), a little above the tap sum's."""
        n, t, h, w, c = x.shape
        kt, st, pt = self.kernel_size[0], self.stride[0], self.padding[0]
        t_out = (t + 2 * pt - kt) // st + 1
        frames = x.reindex([n, t_out, h, w, kt, c],
                           ["i0", f"i1*{st}+i4-{pt}", "i2", "i3", "i5"], overflow_value=0)
        co = self.weight.shape[0]
        weight = self.weight.transpose(0, 2, 1, 3, 4).reshape(co, kt * c, *self.kernel_size[1:])
        y = conv2d_nhwc(frames.reshape(n * t_out, h, w, kt * c), weight,
                        self.stride[1:], self.padding[1:])
        return y.reshape((n, t_out) + tuple(y.shape[1:]))

    def _pointwise(self, x):
        """1x1x1 convolution as one matrix product over every position (strided positions
        are picked first)."""
        st, sh, sw = self.stride
        if (st, sh, sw) != (1, 1, 1):
            x = x[:, ::st, ::sh, ::sw]
        n, t, h, w, c = x.shape
        weight = self.weight.reshape(self.weight.shape[0], c).transpose(1, 0)
        return jt.matmul(x.reshape(n * t * h * w, c), weight).reshape(n, t, h, w, -1)


def conv2d_nhwc(x, weight, stride, padding):
    """2D convolution of NHWC images ``x`` with an OIHW ``weight``, straight on oneDNN (CPU)
    or cuDNN (CUDA) with NHWC in and out: no layout reorder around it.

    These direct calls define no gradient; the frozen backbone does not need one. When a
    gradient is asked for (or CUDA runs without cuDNN), it goes through NCHW and
    ``nn.conv2d``."""
    sh, sw = stride
    ph, pw = padding
    direct = jt.flags.no_grad or not (x.requires_grad or weight.requires_grad)
    if jt.flags.use_cuda and jt.compile_extern.cudnn is None:
        direct = False  # Jittor runs without cuDNN: its own conv kernels, NCHW
    if not direct:
        y = nn.conv2d(x.transpose(0, 3, 1, 2), weight, stride=stride, padding=padding)
        return y.transpose(0, 2, 3, 1)
    if jt.flags.use_cuda:
        return jt.cudnn.ops.cudnn_conv(x, weight, sh, sw, ph, pw, 1, 1, 1,
                                       "acdb", "oihw", "acdb")
    return jt.mkl_ops.mkl_conv(x, weight, sh, sw, ph, pw, 1, 1, 1, "acdb", "oihw", "acdb")


def max_pool(x, kernel_size, stride, padding, axes):
    """Max pooling along ``axes`` (one kernel/stride/padding per axis), -inf padding."""
    for axis, k, s, p in zip(axes, kernel_size, stride, padding):
        if p:
            x = _pad_axis(x, axis, p, p, float("-inf"))
        size = x.shape[axis]
        n_out = (size - k) // s + 1
        out = None
        for j in range(k):
            index = [slice(None)] * x.ndim
            index[axis] = slice(j, j + (n_out - 1) * s + 1, s)
            part = x[tuple(index)]
            out = part if out is None else jt.maximum(out, part)
        x = out
    return x


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
    """PyTorch's Conv2d without bias; ``init`` is 'fan_out' (torchvision's ResNets) or
    'default' (PyTorch's default for a new layer)."""

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
        return nn.conv2d(x, self.weight, stride=self.stride, padding=self.padding)


class Conv1d(nn.Module):
    """PyTorch's Conv1d with kernel size 1 on ``[N, C, L]``, as a matrix product."""

    def __init__(self, in_channels, out_channels, bias=True):
        super().__init__()
        self.weight = jt.zeros((out_channels, in_channels, 1))
        kaiming_normal_fan_out(self.weight)
        self.bias = jt.zeros(out_channels) if bias else None

    def execute(self, x):
        y = jt.matmul(self.weight[:, :, 0], x)
        return y + self.bias.reshape(1, -1, 1) if self.bias is not None else y


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
