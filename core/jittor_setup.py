"""Configure Jittor before it is imported, then import it.

Every module of the project that needs Jittor does ``from core.jittor_setup import jt``
instead of ``import jittor``, so that a fresh machine needs no hand-set variables:

- CUDA is used only when an NVIDIA driver answers with at least one device and
  ``VAANET_NO_CUDA=1`` does not ask for the CPU (the scripts set it for ``--no_cuda``:
  ``core.entry.choose_device``). A machine with ``nvcc`` but no GPU would otherwise make
  Jittor look for libcudart and fail.
- With CUDA, ``core/jittor_cuda.py`` first finds CUDA and cuDNN (pip's CUDA wheels too),
  patches Jittor 1.3.11 for CUDA 12 / 13 and cuDNN 9 where needed, and has Jittor skip a
  cuDNN that cannot be loaded (with a warning).
- On the CPU Jittor uses oneDNN, which the ``jittor-offline`` wheel carries, so nothing
  is downloaded.
- Jittor's info lines are silenced unless ``log_silent`` is already set.
- cutlass (which Jittor would download) is off.
- Jittor does not import PyTorch: where PyTorch is installed, Jittor imports it at start-up
  (``FIX_TORCH_ERROR``, so that a later ``import torch`` cannot clash with Jittor's
  libraries), which costs ~180 MB of resident memory and ~2 s. The port never uses
  PyTorch; the tests, which do, import it before Jittor (``tests/conftest.py``), which is
  the order that needs no such fix.
- NumPy's float limits are computed before any Jittor kernel runs (``_cache_float_limits``).
- Jittor runs no more kernel compiles at once than the process has CPUs.
- Each kernel compiles under a lock that outlives a process killed mid-compile, so that
  the next process never loads a half-written one, and reads the headers every kernel
  includes precompiled, once per machine (``core/kernel_compile.py``).
"""
import os
import sys

from core import jittor_cuda
from core.entry import usable_cpus
from core.jittor_cuda import cuda_device_count


def cpu_requested():
    return os.environ.get("VAANET_NO_CUDA", "0") not in ("", "0")


def _configure_environment():
    os.environ.setdefault("log_silent", "1")
    os.environ.setdefault("use_cutlass", "0")
    os.environ.setdefault("FIX_TORCH_ERROR", "0")
    # Jittor runs up to 16 kernel compiles at once (fewer with less RAM); more compilers
    # than CPUs only share them: on 2 cores the demo's first epoch, which compiles 129
    # kernels, took 1.5-7 s longer with 8 than with 2 in 4 of 5 pairs (~55 s in all)
    os.environ.setdefault("use_parallel_op_compiler", str(usable_cpus()))
    devices = 0 if cpu_requested() else cuda_device_count()
    if cpu_requested() or (devices == 0 and not _compile_only()):
        os.environ["nvcc_path"] = ""
        os.environ["VAANET_NO_CUDA"] = "1"
    else:
        jittor_cuda.prepare(devices)


def _compile_only():
    """``VAANET_CUDA_COMPILE_ONLY=1`` (benchmarks/cuda_compile.py): build Jittor's CUDA core
    and externs on a machine without a GPU; CUDA stays off."""
    return os.environ.get("VAANET_CUDA_COMPILE_ONLY", "0") not in ("", "0")


def _cache_float_limits():
    """Once Jittor's compiled kernels are loaded the CPU flushes subnormals to zero, and
    NumPy, which computes its float limits on first use (scipy and matplotlib ask, in every
    loader worker too), would get the smallest subnormal wrong and warn about it. Computed
    now, they are right and cached for this process and the workers it forks."""
    import numpy as np
    for t in (np.float16, np.float32, np.float64, np.longdouble):
        np.finfo(t)


def _kernel_compile_command():
    """Jittor's ``python_path``, which starts each kernel's compile command: this Python
    running core/kernel_compile.py, from a copy in Jittor's cache folder, so that the
    command (part of each kernel's cache key) does not depend on where this checkout
    lies, and two checkouts sharing one environment reuse each other's kernels."""
    from core.atomic_file import write_text_if_changed
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernel_compile.py"),
              encoding="utf-8") as f:
        script = os.path.join(jt.flags.cache_path, "kernel_compile.py")
        write_text_if_changed(script, f.read())
    return f'"{sys.executable}" "{script}"'


if "jittor" not in sys.modules:
    _configure_environment()
_cache_float_limits()

import jittor as jt  # noqa: E402  (the environment above must be set first)

jt.flags.use_cuda = int(jt.compiler.has_cuda and not cpu_requested())
jt.flags.python_path = _kernel_compile_command()

__all__ = ["jt", "cuda_device_count", "cpu_requested"]
