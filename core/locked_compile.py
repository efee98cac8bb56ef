"""Jittor's kernel compiler, one process at a time per kernel.

    python core/locked_compile.py COMPILER_SCRIPT ARGS... -o KERNEL.so

Jittor builds each kernel with one shell command (``PYTHON asm_tuner.py --cc_path=CC
SOURCE FLAGS -o KERNEL.so``) and keeps two processes from compiling at once with a lock
that lives as long as the process that asked. A compiler left running by a process killed
mid-compile (Ctrl-C or SIGTERM in a run's first batch, a dead MPI rank, a time-out) goes
on writing KERNEL.so and its intermediate files while the next process, which finds no
cache key, compiles the same kernel again: one of them may load a half-written library
("Cannot open library ... file too short") or assemble a half-written file.
``core/jittor_setup.py`` puts this script in front of that command (Jittor's
``python_path``): it holds an exclusive lock on ``KERNEL.so.lock`` until the compiler
ends, whether or not the process that asked is still there, so the next compile of that
kernel starts only then. Kernels of different names still compile in parallel.
"""
import fcntl
import subprocess
import sys


def output_of(args):
    """The path after the last ``-o`` of a compiler command's arguments."""
    at = len(args) - 1 - args[::-1].index("-o")
    return args[at + 1]


def main(args):
    with open(output_of(args) + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when this process ends, however
        return subprocess.call([sys.executable, *args])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
