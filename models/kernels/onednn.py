"""Float32 convolutions on channels-last tensors, straight on oneDNN (the copy Jittor
itself uses on the CPU, ``~/.cache/jittor/mkl/dnnl_*``), compiled on first use.

Jittor's own CPU convolutions (``mkl_conv`` and its backward ops) take NCHW and let oneDNN
allocate reordered copies of every input, output and weight with malloc on each call. The
ops here (``onednn_conv3d*_op.cc``) read and write NDHWC activations in place and keep the
one weight reorder in Jittor's caching allocator.

- ``onednn_ops()``: the compiled module, or None (with a warning if the build failed) when
  there is no oneDNN to build against.
- ``conv3d_ndhwc(x, w, stride, padding)``: ``x [N, D, H, W, C]``, ``w [O, C, KD, KH, KW]``
  -> ``[N, D', H', W', O]``, with a gradient for ``x`` and ``w``. A 2D convolution is
  the case D = KD = 1.
"""
import functools
import glob
import os
import warnings

from core.jittor_setup import jt
from models.kernels import needs_grad

_OPS = ("onednn_conv3d", "onednn_conv3d_backward_x", "onednn_conv3d_backward_w")


@functools.lru_cache(maxsize=None)
def onednn_ops():
    if jt.compile_extern.mkl_ops is None:
        return None
    import jittor_utils
    homes = sorted(glob.glob(os.path.join(jittor_utils.home(), ".cache", "jittor", "mkl",
                                          "dnnl*")))
    homes = [h for h in homes if os.path.isdir(os.path.join(h, "include"))]
    if not homes:
        return None
    home = homes[-1]
    here = os.path.dirname(os.path.abspath(__file__))
    flags = (f' -I"{os.path.join(home, "include")}" -L"{os.path.join(home, "lib")}"'
             f' -lmkldnn ')
    files = [os.path.join(here, "onednn_conv3d_common.h")]
    files += [os.path.join(here, f"{op}_op.{ext}") for op in _OPS for ext in ("h", "cc")]
    try:
        return jt.compile_custom_ops(files, extra_flags=flags)
    except Exception as e:  # a broken toolchain or oneDNN copy: slower, but still correct
        warnings.warn(f"could not build the oneDNN convolution kernels of {here} ({e}); "
                      "falling back to Jittor's own convolutions, which are much slower")
        return None


class _Conv3d(jt.Function):
    def __init__(self, stride, padding):
        self.stride, self.padding = tuple(stride), tuple(padding)

    def execute(self, x, w):
        self.saved = (x, w)
        return onednn_ops().onednn_conv3d(x, w, *self.stride, *self.padding)

    def grad(self, dy):
        x, w = self.saved
        ops = onednn_ops()
        dx = ops.onednn_conv3d_backward_x(w, dy, *x.shape[1:4], *self.stride, *self.padding)
        dw = ops.onednn_conv3d_backward_w(x, dy, *w.shape[2:], *self.stride, *self.padding)
        return dx, dw


def conv3d_ndhwc(x, w, stride, padding):
    if not needs_grad(x, w):
        return onednn_ops().onednn_conv3d(x, w, *stride, *padding)
    return _Conv3d(stride, padding)(x, w)
