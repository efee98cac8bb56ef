"""Configure Jittor before it is imported, then import it.

Every module of the project that needs Jittor does ``from core.jittor_setup import jt``
instead of ``import jittor``, so that a fresh machine needs no hand-set variables:

- CUDA is used only when an NVIDIA driver answers with at least one device and
  ``VAANET_NO_CUDA=1`` does not ask for the CPU (the scripts set it for ``--no_cuda``:
  ``core.entry.choose_device``). A machine with ``nvcc`` but no GPU would otherwise make
  Jittor look for libcudart and fail.
- On the CPU Jittor uses oneDNN, which the ``jittor-offline`` wheel carries, so nothing
  is downloaded.
- Jittor's info lines are silenced unless ``log_silent`` is already set.
- cutlass (which Jittor would download) is off.
- NumPy's float limits are computed before any Jittor kernel runs (``_cache_float_limits``).
"""
import ctypes
import os
import sys


def cuda_device_count():
    """Number of CUDA devices the driver reports; 0 when there is no usable driver."""
    for name in ("libcuda.so.1", "libcuda.so"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        count = ctypes.c_int(0)
        if lib.cuInit(0) != 0 or lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return 0
        return count.value
    return 0


def cpu_requested():
    return os.environ.get("VAANET_NO_CUDA", "0") not in ("", "0")


def _configure_environment():
    os.environ.setdefault("log_silent", "1")
    os.environ.setdefault("use_cutlass", "0")
    if cpu_requested() or cuda_device_count() == 0:
        os.environ["nvcc_path"] = ""
        os.environ["VAANET_NO_CUDA"] = "1"


def _cache_float_limits():
    """Once Jittor's compiled kernels are loaded the CPU flushes subnormals to zero, and
    NumPy, which computes its float limits on first use (scipy and matplotlib ask, in every
    loader worker too), would get the smallest subnormal wrong and warn about it. Computed
    now, they are right and cached for this process and the workers it forks."""
    import numpy as np
    for t in (np.float16, np.float32, np.float64, np.longdouble):
        np.finfo(t)


if "jittor" not in sys.modules:
    _configure_environment()
_cache_float_limits()

import jittor as jt  # noqa: E402  (the environment above must be set first)

jt.flags.use_cuda = int(jt.compiler.has_cuda and not cpu_requested())

__all__ = ["jt", "cuda_device_count", "cpu_requested"]
