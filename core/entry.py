"""What the command-line scripts (main.py, test.py, predict.py) do alike: their ``__main__``
(under mpirun too), their errors and exit status, and their choice of device.

    def run(argv):                     # the script's work
        raise UsageError("checkpoint not found: ...")     # exit 2: "test.py: error: ..."
        raise RunFailed("cannot read a sample ...")       # exit 1: the lines as they are
    def main(argv=None):
        return entry.exit_status("test.py", run, argv)
    if __name__ == "__main__":
        sys.exit(entry.run(main))

A usage error (what was asked cannot be done: a missing file, options that do not fit) is
found before the work starts and reported as ``<script>: error: <what, and what to do>``
with exit status 2; a run that fails on the way (a sample that cannot be read) reports its
lines (``rank k:`` before each under MPI) with exit status 1. Neither shows a traceback,
unless ``--debug`` asks where a sample failed (``unreadable_sample``).

Kept free of Jittor, so that ``--help`` and early errors answer without starting it.
"""
import os
import sys

# Set by Open MPI's and MPICH's launchers in every rank they start.
_MPI_LAUNCHER_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK")


def usable_cpus():
    """The CPUs this process may run on: its affinity (taskset, a batch scheduler's share),
    not all the machine's."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def launched_by_mpirun():
    return any(k in os.environ for k in _MPI_LAUNCHER_VARIABLES)


class UsageError(Exception):
    """What was asked cannot be done: reported as one message, exit status 2."""


class RunFailed(Exception):
    """The run failed on the way: its lines are reported as they are, exit status 1."""


def exit_status(prog, work, argv=None):
    """The status ``work(argv)`` returns where it is an int (a run that chose its own, e.g.
    130 after Ctrl-C), else 0; 2 for a UsageError, 1 for RunFailed, each reported on stderr
    (see the module docstring)."""
    try:
        status = work(argv)
    except UsageError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except RunFailed as e:
        from core.distributed import report
        report(str(e))
        return 1
    return status if isinstance(status, int) else 0


def unreadable_sample(error, debug, lines):
    """RunFailed of ``lines`` for a sample that cannot be read (``datasets.errors.SampleError``
    ``error``); with ``debug`` (--debug) it shows where it happened and raises ``error``
    itself instead, traceback and all."""
    if debug:
        print(f"where the error happened:\n{error.detail}", file=sys.stderr)
        raise error
    return RunFailed("\n".join(lines))


def run(main):
    """``main()``'s exit status; under mpirun a failure on any rank (bad data, an exception,
    a non-zero status) ends every rank with "rank k: <error>" instead of leaving the
    others waiting in a collective. A file that cannot be written (``WriteError``: a full
    disk, a read-only folder...) is reported in two lines and exit status 1, without the
    traceback unless ``--debug`` is given. An interrupted run (``core.stopping``) ends at
    once, its worker processes with it; a stop the script let escape is reported in one
    line ("main.py: stopped by SIGTERM.")."""
    from core import stopping
    from core.atomic_file import WriteError
    try:
        if launched_by_mpirun():
            from core.distributed import run_entry_point
            return run_entry_point(main)
        status = main()
    except WriteError as e:
        if "--debug" in sys.argv[1:]:
            raise
        print(write_error_message(e), file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:  # a stop the script did not report itself
        status = getattr(e, "status", stopping.STATUSES[0])
        print(f"{os.path.basename(sys.argv[0])}: {e or 'stopped by SIGINT'}.", file=sys.stderr)
    if status in stopping.STATUSES or stopping.underway():
        stopping.exit_now(status)
    return status


def write_error_text(error):
    """A ``WriteError`` in two lines: the file and the cause; what to do."""
    return f"{error}.\n{error.remedy}, then run it again."


def write_error_message(error):
    """``write_error_text`` after the script's name."""
    return f"{os.path.basename(sys.argv[0])}: {write_error_text(error)}"


def choose_device(no_cuda):
    """Honour ``--no_cuda`` as parsed (also from ``main(["--no_cuda"])`` in Python): before
    Jittor starts through ``VAANET_NO_CUDA``, which ``core.jittor_setup`` reads; once it
    runs (under mpirun, which starts it first) by switching Jittor to the CPU."""
    if not no_cuda:
        return
    os.environ["VAANET_NO_CUDA"] = "1"
    setup = sys.modules.get("core.jittor_setup")
    if setup is not None:
        setup.jt.flags.use_cuda = 0
