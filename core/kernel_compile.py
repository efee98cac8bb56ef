"""Jittor's kernel compiles: one process at a time per kernel, the common headers parsed once.

    python core/kernel_compile.py COMPILER_SCRIPT ARGS... -o KERNEL.so

Jittor builds each kernel with one shell command (``PYTHON asm_tuner.py --cc_path=CC
SOURCE FLAGS -o KERNEL.so``); ``core/jittor_setup.py`` makes this script its PYTHON
(Jittor's ``python_path``). It runs COMPILER_SCRIPT in this process, with these changes:

- **A lock that outlives the process that asked.** Jittor keeps two processes from
  compiling at once with a lock that lives as long as the asking process. A compiler left
  running by a process killed mid-compile (Ctrl-C or SIGTERM in a run's first batch, a dead
  MPI rank, a time-out) goes on writing KERNEL.so and its intermediate files while the next
  process, which finds no cache key, compiles the same kernel again: one of them may load a
  half-written library ("Cannot open library ... file too short") or assemble a
  half-written file. This script holds an exclusive lock on ``KERNEL.so.lock`` until the
  compiler ends, whether or not the asking process is still there. Kernels of different
  names still compile in parallel.
- **A precompiled header.** Every CPU kernel starts with the same includes (the C++
  library, Jittor's ``var.h``, ``op_register.h``, ``executor.h``, ``fused_op.h``, ...),
  and g++ spends ~1 s of a kernel's ~1.3 s parsing them; a first run of the tests compiles
  ~500 kernels. The first compile with a given set of flags builds those headers once into
  a GCC precompiled header (``pch/<hash of compiler and flags>/kernel.h.gch`` in Jittor's
  cache folder: ~3 s, ~80 MB), which every later compile with the same flags reads instead.
  The machine code is the same (tests/test_kernel_compile.py compares it); where the header
  cannot be built, the compiler is not GCC's, or the source does not start as Jittor's CPU
  kernels do, the command runs unchanged.
- **One compile of a kernel asked for twice at once.** Two processes that meet the same new
  kernel at the same time (the two test processes, MPI ranks) both find no cache key and
  both ask for it; the second waits for the first's lock. When the first compile succeeded
  while it waited (``KERNEL.so.built`` is newer than its wait), the second uses that kernel
  instead of compiling it again.
- **Jittor's Python utilities not imported.** COMPILER_SCRIPT (Jittor's asm_tuner) imports
  ``jittor_utils`` for its logger and core library only, and that import runs g++ twice,
  ``uname`` and ``git`` (~0.1 s of a kernel's ~0.5 s). It gets a stand-in with those two;
  any other name it asks for comes from the real module.

- **No assembly pass where none is asked for.** asm_tuner compiles a kernel to assembly
  with debug information (``-g -S``), reads that into Python, rewrites the lines that the
  source's ``//@begin replace`` markers name (non-temporal stores, in a few kernels),
  writes it back and assembles it. Most kernel sources have no marker; for them the
  rewrite changes nothing, and g++ builds the library from the source at once: the same
  machine code (tests/test_kernel_compile.py compares it), in ~25 % less time and a
  tenth of the disk.

The script runs from a copy in Jittor's cache folder (core/jittor_setup.py), so it imports
nothing of the project.
"""
import fcntl
import hashlib
import os
import runpy
import subprocess
import sys
import tempfile
import time
import types

#: What every Jittor CPU kernel's source starts with: the header is built with the same
#: macros defined, and used only for sources that define them the same way.
KERNEL_PREAMBLE = ("#define JIT 1", "#define JIT_cpu 1")
MACROS = ["-DJIT=1", "-DJIT_cpu=1"]
#: The includes (nearly) every CPU kernel makes before its own code.
COMMON_INCLUDES = ("<cmath>", "<algorithm>", "<limits>", "<assert.h>", '"var.h"',
                   '"ops/op_register.h"', '"executor.h"', '"fused_op.h"',
                   '"misc/cpu_math.h"')
#: Flags that only matter when linking; the header is built (and the kernel compiled to
#: assembly, by Jittor's asm_tuner) without them.
LINK_ONLY = ("-l", "-L", "-Wl,", "-shared")


def _output_index(args):
    """The index of the last ``-o`` in a compiler command's arguments."""
    return len(args) - 1 - args[::-1].index("-o")


def output_of(args):
    """The path after the last ``-o`` of a compiler command's arguments."""
    return args[_output_index(args) + 1]


def compile_flags(flags):
    """``flags`` without those that only matter when linking."""
    return [a for a in flags if not any(a.startswith(p) for p in LINK_ONLY)]


def _kernel_command(args):
    """``(compiler, compile flags)`` of a CPU kernel command ``SCRIPT --cc_path=CC SOURCE
    FLAGS... -o KERNEL.so`` compiled by GCC, else None."""
    if len(args) < 5 or not args[1].startswith("--cc_path=") or not args[2].endswith("_op.cc"):
        return None
    compiler = args[1].split("=", 1)[1]
    if not os.path.basename(compiler).startswith("g++"):
        return None
    try:
        with open(args[2], encoding="utf-8") as f:
            head = [line for line in (f.readline().strip() for _ in range(8)) if line]
    except OSError:
        return None
    if head[:len(KERNEL_PREAMBLE)] != list(KERNEL_PREAMBLE):
        return None
    out = _output_index(args)
    return compiler, compile_flags(args[3:out] + args[out + 2:])


def build_header(compiler, flags, folder):
    """``folder/kernel.h`` (the common includes) and its precompiled ``kernel.h.gch``,
    built for ``compiler`` and ``flags`` unless already there; None when GCC cannot build
    it (a marker keeps later compiles from trying again)."""
    header, failed = os.path.join(folder, "kernel.h"), os.path.join(folder, "failed")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(failed):
            return None
        if not os.path.exists(header + ".gch"):
            with open(header, "w", encoding="utf-8") as f:
                f.write("".join(f"#include {name}\n" for name in COMMON_INCLUDES))
            # a temporary name, then a rename: a killed build leaves no half-written header
            fd, tmp = tempfile.mkstemp(dir=folder, suffix=".gch.tmp")
            os.close(fd)
            built = subprocess.run([compiler, *flags, "-g", *MACROS, "-x", "c++-header",
                                    header, "-o", tmp], capture_output=True).returncode == 0
            if not built:
                os.unlink(tmp)
                open(failed, "w").close()
                return None
            os.replace(tmp, header + ".gch")
    return header


def with_precompiled_header(args):
    """``args`` with the precompiled header included first (built on first use), or
    ``args`` unchanged where it does not apply."""
    kernel = _kernel_command(args)
    if kernel is None:
        return args
    compiler, flags = kernel
    key = hashlib.sha256("\0".join([compiler, *flags]).encode()).hexdigest()[:16]
    cache = os.path.dirname(os.path.dirname(os.path.abspath(output_of(args))))
    header = build_header(compiler, flags, os.path.join(cache, "pch", key))
    if header is None:
        return args
    return [*args[:3], *MACROS, "-include", header, *args[3:]]  # after the source


def jittor_utils_stand_in():
    """A module with what asm_tuner uses of ``jittor_utils`` (its logger's ``vvvv``, a
    no-op core import); any other name is looked up in the real module."""
    def real(name):
        if name.startswith("__"):  # e.g. ``__path__``, looked up by ``from ... import``
            raise AttributeError(name)
        if sys.modules.get("jittor_utils") is module:
            del sys.modules["jittor_utils"]
        import jittor_utils
        return getattr(jittor_utils, name)

    module = types.ModuleType("jittor_utils")
    module.LOG = types.SimpleNamespace(vvvv=lambda *messages: None)
    module.try_import_jit_utils_core = lambda silent=False: None
    module.__getattr__ = real
    return module


def direct_command(args):
    """The command that builds a GCC CPU kernel ``SCRIPT --cc_path=CC SOURCE FLAGS... -o
    KERNEL.so`` without asm_tuner, where its source has no marker for it; else None."""
    if len(args) < 5 or not args[1].startswith("--cc_path=") or not args[2].endswith("_op.cc"):
        return None
    compiler = args[1].split("=", 1)[1]
    if not os.path.basename(compiler).startswith("g++") or not output_of(args).endswith(".so"):
        return None
    try:
        with open(args[2], encoding="utf-8") as f:
            if "@begin" in f.read():
                return None
    except OSError:
        return None
    return [compiler, *args[2:]]


def lock_or_wait(lock):
    """Take ``lock``; True when another process held it (and so had to be waited for)."""
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return True


def main(args):
    output = output_of(args)
    built = output + ".built"  # touched when a compile of ``output`` succeeded
    with open(output + ".lock", "a") as lock:
        asked = time.time()
        # the lock is released when this process ends, however
        if lock_or_wait(lock) and os.path.exists(built) and os.path.getmtime(built) >= asked:
            return 0  # compiled while this process waited
        sys.argv = with_precompiled_header(args)
        command = direct_command(sys.argv)
        if command is not None:
            status = subprocess.run(command).returncode
            if status != 0:
                return status
        else:
            sys.modules.setdefault("jittor_utils", jittor_utils_stand_in())
            runpy.run_path(args[0], run_name="__main__")
        open(built, "w").close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
