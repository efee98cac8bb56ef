"""Child processes (ffmpeg, audio decoders) that may crash without taking this process along.

    from core.child_processes import children_may_die, run_child, exit_description
    proc = run_child([ffmpeg, "-i", video, ...], stdout=subprocess.PIPE)  # never fatal
    with children_may_die():
        y, sr = librosa.load(mp3)            # a decoder child of librosa may crash too
    exit_description(-11)                    # 'was killed by signal 11 (SIGSEGV): it crashed'

Why this exists: once Jittor is imported, its SIGCHLD handler ends the whole process
("Caught SIGCHLD ... quick exit", status 1) as soon as any child process dies by a signal,
because for Jittor a dead child means a loader worker killed by the out-of-memory killer,
whose batch the main process would otherwise wait for forever. An ffmpeg that crashes on
one bad video (or is killed for a time-out) would then end a whole prediction batch.

The choice: while a child of ours runs, SIGCHLD has its default action (nothing happens;
``subprocess`` still reaps the child and reads its status), and Jittor's handler is put
back, byte for byte, as soon as the last such child is done. The alternatives were worse:

- replacing Jittor's handler for good would turn a loader worker killed by the system
  into a hang instead of an exit;
- running ffmpeg from a process that never imported Jittor (a helper started early, or a
  shell in between) costs a process per call, and that helper's own death (a time-out
  kill) would again be a child killed by a signal.

Jittor's handler is a C function that Python's ``signal`` module cannot re-install (it
reports it as ``None``), so it is saved and restored with the C library's ``sigaction``,
as an opaque ``struct sigaction``. Nested and concurrent uses (threads) are counted: the
handler is restored when the last one ends. While the default action is on, a Jittor
loader worker that dies by a signal is not noticed by Jittor's handler; the project runs
children only where no loader worker of that process is alive (ffmpeg in ``predict.py``
and the dataset tools, MFCC computation inside the workers themselves or with
``--n_threads 0``). Without Jittor (or without SIGCHLD, on Windows) nothing changes.

This module imports nothing of the project's and does not import Jittor.
"""
import contextlib
import ctypes
import functools
import signal
import subprocess
import threading

__all__ = ["children_may_die", "run_child", "exit_description"]

_SIGCHLD = getattr(signal, "SIGCHLD", None)
_STRUCT_SIGACTION_BYTES = 512  # larger than struct sigaction on every libc (glibc: 152)
_lock = threading.Lock()
_depth = 0
_saved = None


@functools.lru_cache(maxsize=None)
def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _sigaction(new, old):
    if _libc().sigaction(_SIGCHLD, new, old) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"sigaction(SIGCHLD) failed: {err}")


@contextlib.contextmanager
def children_may_die():
    """Within this block a child process that dies by a signal is an ordinary exit status
    for its caller, not the end of this process (see the module docstring)."""
    global _depth, _saved
    if _SIGCHLD is None:
        yield
        return
    with _lock:
        if _depth == 0:
            saved = ctypes.create_string_buffer(_STRUCT_SIGACTION_BYTES)
            default = ctypes.create_string_buffer(_STRUCT_SIGACTION_BYTES)  # SIG_DFL, no flags
            _sigaction(default, saved)
            _saved = saved
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                _sigaction(_saved, None)
                _saved = None


def run_child(cmd, **kwargs):
    """``subprocess.run(cmd, **kwargs)`` within :func:`children_may_die`: a child that
    crashes or is killed gives a negative ``returncode`` (``-signal``), as without Jittor."""
    with children_may_die():
        return subprocess.run(cmd, **kwargs)


_CRASH_SIGNALS = {"SIGSEGV", "SIGBUS", "SIGILL", "SIGFPE", "SIGABRT"}


def exit_description(returncode):
    """A child's exit status in words: 'exited with status 1', 'was killed by signal 9
    (SIGKILL)', 'was killed by signal 11 (SIGSEGV): it crashed'."""
    if returncode is None:
        return "is still running"
    if returncode >= 0:
        return f"exited with status {returncode}"
    number = -returncode
    try:
        name = signal.Signals(number).name
    except ValueError:
        name = "unknown signal"
    crashed = ": it crashed" if name in _CRASH_SIGNALS else ""
    return f"was killed by signal {number} ({name}){crashed}"
