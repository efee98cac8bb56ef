"""Configure Jittor before it is imported, then import it.

Every module of the project that needs Jittor does ``from core.jittor_setup import jt``
instead of ``import jittor``, so that a fresh machine needs no hand-set variables:

- CUDA is used only when an NVIDIA driver answers with at least one device and neither
  ``VAANET_NO_CUDA=1`` nor ``--no_cuda`` (on the command line) asks for the CPU. A machine
  with ``nvcc`` but no GPU would otherwise make Jittor look for libcudart and fail.
- On the CPU Jittor uses oneDNN, which the ``jittor-offline`` wheel carries, so nothing
  is downloaded.
- Jittor's info lines are silenced unless ``log_silent`` is already set.
- cutlass (which Jittor would download) is off.
- Jittor does not import PyTorch: where PyTorch is installed, Jittor imports it at start-up
  (``FIX_TORCH_ERROR``, so that a later ``import torch`` cannot clash with Jittor's
  libraries), which costs ~180 MB of resident memory and ~2 s. The port never uses
  PyTorch; the tests, which do, import it before Jittor (``tests/conftest.py``), which is
  the order that needs no such fix.
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
    return os.environ.get("VAANET_NO_CUDA", "0") not in ("", "0") or "--no_cuda" in sys.argv


def _configure_environment():
    os.environ.setdefault("log_silent", "1")
    os.environ.setdefault("use_cutlass", "0")
    os.environ.setdefault("FIX_TORCH_ERROR", "0")
    if cpu_requested() or cuda_device_count() == 0:
        os.environ["nvcc_path"] = ""
        os.environ["VAANET_NO_CUDA"] = "1"


if "jittor" not in sys.modules:
    _configure_environment()

import jittor as jt  # noqa: E402  (the environment above must be set first)

jt.flags.use_cuda = int(jt.compiler.has_cuda and not cpu_requested())

__all__ = ["jt", "cuda_device_count", "cpu_requested"]
