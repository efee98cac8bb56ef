"""Float32 convolutions on channels-last tensors, straight on oneDNN, compiled on first use.

Which oneDNN: the 2.2 that Jittor itself uses on the CPU (``~/.cache/jittor/mkl/dnnl_*``),
or with ``VAANET_ONEDNN=pypi`` the 3.x of PyPI's GNU-OpenMP build (``pip install
onednn-cpu-gomp onednn-devel-cpu-gomp``). Both builds come from the same sources
(``onednn_conv3d*_op.cc``). 3.2 runs the audio stream's forward convolutions in 0.8 of
2.2's time and ties on the backward passes and on the backbone, but its forward kernels
for the backbone's large 3D convolutions round 2-4x more (the float64 parity figures of
the whole model double): so 2.2 is the default (``benchmarks/README.md``). The two
libraries live in one process without clashing: they have different sonames
(libdnnl.so.2 and .3), and Jittor opens every compiled kernel with ``RTLD_DEEPBIND``, so
each kernel binds to the oneDNN it was linked against; the OpenMP runtime (GNU) is the one
Jittor uses.

Jittor's own CPU convolutions (``mkl_conv`` and its backward ops) take NCHW and let oneDNN
allocate reordered copies of every input, output and weight with malloc on each call. The
ops here read and write NDHWC activations in place and keep the one weight reorder in
Jittor's caching allocator.

- ``onednn_ops()``: the compiled module, or None (with a warning if the build failed) when
  there is no oneDNN to build against.
- ``onednn_version()``: the version of the oneDNN the ops are built against, e.g. "3.2".
- ``conv3d_ndhwc(x, w, stride, padding)``: ``x [N, D, H, W, C]``, ``w [O, C, KD, KH, KW]``
  -> ``[N, D', H', W', O]``, with a gradient for ``x`` and ``w``. A 2D convolution is
  the case D = KD = 1. The forward pass runs oneDNN's channel-blocked kernel (the
  activations reordered in and out), the one PyTorch's NCDHW tensors get, whose rounding
  on AVX-512 is 2-4x smaller than the channels-last kernel's.
"""
import functools
import glob
import os
import re
import warnings

from core.jittor_setup import jt
from models.kernels import needs_grad

_OPS = ("onednn_conv3d", "onednn_conv3d_backward_x", "onednn_conv3d_backward_w")


def _version(include):
    """(major, minor) from a oneDNN include folder, or None if it is not one."""
    try:
        with open(os.path.join(include, "oneapi", "dnnl", "dnnl_version.h")) as f:
            text = f.read()
    except OSError:
        return None
    parts = [re.search(rf"#define DNNL_VERSION_{p} (\d+)", text) for p in ("MAJOR", "MINOR")]
    return tuple(int(m.group(1)) for m in parts) if all(parts) else None


def _pypi_onednn():
    """(include folder, lib folder) of oneDNN 3.x installed from PyPI's GNU-OpenMP wheels
    (the OpenMP runtime must be Jittor's), or None."""
    from importlib import metadata
    try:
        runtime = metadata.distribution("onednn-cpu-gomp")
        devel = metadata.distribution("onednn-devel-cpu-gomp")
    except metadata.PackageNotFoundError:
        return None
    libs = [f for f in runtime.files or () if f.name.startswith("libdnnl.so")]
    headers = [f for f in devel.files or () if str(f).endswith("oneapi/dnnl/dnnl.hpp")]
    if not libs or not headers:
        return None
    lib = os.path.dirname(os.path.normpath(runtime.locate_file(libs[0])))
    include = os.path.normpath(os.path.join(str(devel.locate_file(headers[0])), "..", "..", ".."))
    version = _version(include)
    if version is None or version[0] < 3:
        return None
    return include, lib


def _jittor_onednn():
    """(include folder, lib folder) of the oneDNN 2.2 that Jittor downloads for itself."""
    if jt.compile_extern.mkl_ops is None:
        return None
    import jittor_utils
    homes = sorted(glob.glob(os.path.join(jittor_utils.home(), ".cache", "jittor", "mkl",
                                          "dnnl*")))
    homes = [h for h in homes if os.path.isdir(os.path.join(h, "include"))]
    if not homes:
        return None
    return os.path.join(homes[-1], "include"), os.path.join(homes[-1], "lib")


def _choose():
    """The oneDNN to build against: (include, lib, link name) or None."""
    want = os.environ.get("VAANET_ONEDNN", "jittor")
    if want not in ("pypi", "jittor"):
        raise ValueError(f"VAANET_ONEDNN must be jittor or pypi, not {want!r}")
    if want == "pypi":
        found = _pypi_onednn()
        if found is None:
            raise RuntimeError("VAANET_ONEDNN=pypi, but oneDNN 3.x from PyPI is not installed "
                               "(pip install onednn-cpu-gomp onednn-devel-cpu-gomp)")
        return found + ("dnnl",)
    found = _jittor_onednn()
    return None if found is None else found + ("mkldnn",)


@functools.lru_cache(maxsize=None)
def _build():
    """(compiled module, (major, minor)) or (None, None)."""
    chosen = _choose()
    if chosen is None:
        return None, None
    include, lib, name = chosen
    version = _version(include)
    here = os.path.dirname(os.path.abspath(__file__))
    flags = f' -I"{include}" -L"{lib}" -l{name} '
    files = [os.path.join(here, "onednn_conv3d_common.h")]
    files += [os.path.join(here, f"{op}_op.{ext}") for op in _OPS for ext in ("h", "cc")]
    try:
        # One module name per oneDNN version, so the two builds never overwrite each other.
        ops = jt.compile_custom_ops(files, extra_flags=flags,
                                    gen_name_=f"gen_ops_vaanet_onednn{version[0]}")
    except Exception as e:  # a broken toolchain or oneDNN copy: slower, but still correct
        warnings.warn(f"could not build the oneDNN convolution kernels of {here} against "
                      f"{include} ({e}); falling back to Jittor's own convolutions, which are "
                      "much slower")
        return None, None
    return ops, version


def onednn_ops():
    return _build()[0]


def onednn_version():
    version = _build()[1]
    return None if version is None else "%d.%d" % version


# Every forward pass runs oneDNN's channel-blocked kernel, the one PyTorch's NCDHW tensors
# get: on AVX-512 the channels-last kernel rounds 2-4x more, enough to flip ReLU masks after
# the BatchNorms and to put the port's outputs and gradients twice as far from float64 as
# the release's (docs/faithfulness.md). The reorders in and out cost nothing measurable.
BLOCKED = 1


class _Conv3d(jt.Function):
    def __init__(self, stride, padding):
        self.stride, self.padding = tuple(stride), tuple(padding)

    def execute(self, x, w):
        self.saved = (x, w)
        return onednn_ops().onednn_conv3d(x, w, *self.stride, *self.padding, 1, BLOCKED)

    def grad(self, dy):
        x, w = self.saved
        ops = onednn_ops()
        dx = ops.onednn_conv3d_backward_x(w, dy, *x.shape[1:4], *self.stride, *self.padding)
        dw = ops.onednn_conv3d_backward_w(x, dy, *w.shape[2:], *self.stride, *self.padding)
        return dx, dw


def conv3d_ndhwc(x, w, stride, padding):
    if not needs_grad(x, w):
        return onednn_ops().onednn_conv3d(x, w, *stride, *padding, 0, BLOCKED)
    return _Conv3d(stride, padding)(x, w)
