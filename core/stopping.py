"""Stopping a run cleanly on SIGINT (Ctrl-C) and SIGTERM (what schedulers send before
they pre-empt a job).

    with stop_on_signals():
        ...                      # a signal raises Interrupted here, within a batch or so

Jittor installs its own SIGINT handler when it is imported ("Caught SIGINT, quick exit":
the process ends at once, status 1, with no word on what was kept), and leaves SIGTERM
to its default (the process vanishes). Inside the block both raise ``Interrupted`` in the
main thread instead, so the caller can say which checkpoint is complete and how to resume.
The exception derives from ``KeyboardInterrupt``: no ``except Exception`` on the way
(a loader's per-sample error handling, for one) can swallow it. Python runs the handler
between two bytecodes, so a signal that comes during a long Jittor call (a batch) acts
when that call returns. Later signals while the first is being handled are ignored.

Jittor's loader workers are forked from the main process and get the same Ctrl-C (the
terminal sends it to the whole process group): in a forked child SIGINT is ignored (the
main process stops its workers when it ends) and SIGTERM has its default action, which is
how Jittor stops its workers. Once interrupted, the process is ending: SIGCHLD gets its
default action, or Jittor's handler would take the workers' ends on the way out for a
worker killed by the system ("Caught SIGCHLD ... quick exit", status 1).

Python runs a handler wherever the main thread is, a finalizer included (a generator the
garbage collector closes: tqdm's progress bars), where an exception cannot propagate: it
would be printed ("Exception ignored in ...") and the stop lost, the work going on. Inside
the block such an ``Interrupted`` is kept instead, and raised by ``check()`` (the training
and evaluation loops call it before each batch) or on leaving the block. A failure that
follows a stop signal (a kernel compile the signal cut short) is the stop: ``underway()``
tells the scripts so.

On leaving the block the handlers (and ``sys.unraisablehook``) found on entry are put back
(Python's default SIGINT handler where the one found was Jittor's, which Python cannot
re-install).

    with deferred():             # a step that must be whole: a checkpoint and its record
        ...                      # a signal here raises Interrupted on leaving the block
"""
import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import time

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_state = {"pid": None, "stopping": False, "on_signal": None, "deferring": False,
          "pending": None, "unraisablehook": None, "lost": None, "signum": None,
          "exiting": False}


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; ``signum`` says which, ``status`` is the conventional
    exit status (128 + the signal's number)."""

    def __init__(self, signum):
        self.signum = signum
        self.name = signal.Signals(signum).name
        self.status = 128 + signum
        super().__init__(f"stopped by {self.name}")


STATUSES = (128 + signal.SIGINT, 128 + signal.SIGTERM)  # an interrupted run's exit status


def exit_now(status):
    """End an interrupted process at once, stdio flushed, its worker processes (Jittor's
    loader workers and kernel-compile pool) killed first. Python's teardown would wait for
    them and hang: for loader workers stopped mid-batch, and for the compile pool once a
    signal to the whole process group killed a worker holding the pool's queue lock."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    if hasattr(signal, "SIGCHLD"):
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # not Jittor's "quick exit"
    # A pool replaces the workers it finds dead from a thread of its own; one started after
    # the kills would outlive the process, stuck, holding its output open (a pipe read by
    # make or tee then never ends). From here on no worker starts (_before_fork), and one
    # whose start was under way joins the list within moments: a second round kills it.
    _state["exiting"] = True
    _kill_workers()
    time.sleep(0.05)
    _kill_workers()
    os._exit(status)


def _kill_workers():
    for child in multiprocessing.active_children():
        child.kill()


def _handler(signum, frame):
    if os.getpid() != _state["pid"] or _state["stopping"]:
        return
    if _state["deferring"]:
        _state["pending"] = signum
        return
    _stop(signum)


def _stop(signum):
    _state.update(stopping=True, signum=signum)
    if hasattr(signal, "SIGCHLD"):
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    error = Interrupted(signum)
    if _state["on_signal"] is not None:
        _state["on_signal"](error.status)
    raise error


def _unraisable(report):
    """``sys.unraisablehook`` inside the block: an ``Interrupted`` raised in a finalizer is
    kept for ``check()``, not printed."""
    if isinstance(report.exc_value, Interrupted) and os.getpid() == _state["pid"]:
        _state["lost"] = report.exc_value
        return
    _state["unraisablehook"](report)


def check():
    """Raise the ``Interrupted`` of a stop signal whose exception was raised in a finalizer
    (see the module docstring); nothing otherwise."""
    lost, _state["lost"] = _state["lost"], None
    if lost is not None:
        raise lost


def underway():
    """The signal's ``Interrupted`` once a stop signal has come inside the block, else None:
    an error raised after it is taken for its consequence. The caller acts on the stop, so
    a stop kept from a finalizer is not raised again (by ``check()`` or on leaving the
    block)."""
    if not _state["stopping"]:
        return None
    _state["lost"] = None
    return Interrupted(_state["signum"])


def _before_fork():
    """Once the process is ending (``exit_now``), a thread about to fork a worker waits for
    the end instead."""
    if _state["exiting"]:
        threading.Event().wait()


def _in_forked_child():
    if _state["pid"] is not None and os.getpid() != _state["pid"]:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


os.register_at_fork(before=_before_fork, after_in_child=_in_forked_child)


@contextlib.contextmanager
def stop_on_signals(on_signal=None):
    """Within the block SIGINT and SIGTERM raise ``Interrupted`` (see the module
    docstring), after calling ``on_signal(exit status)`` when given."""
    previous = {s: signal.getsignal(s) for s in _SIGNALS}
    _state.update(pid=os.getpid(), stopping=False, on_signal=on_signal,
                  unraisablehook=sys.unraisablehook, lost=None)
    sys.unraisablehook = _unraisable
    for s in _SIGNALS:
        signal.signal(s, _handler)
    try:
        yield
    finally:
        lost = _state["lost"]  # a stop not yet raised (see check): it ends the block
        sys.unraisablehook = _state["unraisablehook"]
        _state.update(pid=None, on_signal=None, lost=None)
        for s, handler in previous.items():
            if handler is None:  # installed outside Python (Jittor's SIGINT handler)
                handler = signal.default_int_handler if s == signal.SIGINT else signal.SIG_DFL
            signal.signal(s, handler)
    if lost is not None:
        raise lost


@contextlib.contextmanager
def deferred():
    """Within the block a stop signal waits: it raises ``Interrupted`` on leaving it, so
    that the block's work (a checkpoint written, and the record of which one is complete)
    is done whole or not begun. Outside ``stop_on_signals`` it changes nothing."""
    _state.update(deferring=True, pending=None)
    try:
        yield
    finally:
        signum = _state["pending"]
        _state.update(deferring=False, pending=None)
        if signum is not None:
            _stop(signum)
