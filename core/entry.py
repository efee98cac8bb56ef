"""The ``__main__`` of the command-line scripts (main.py, test.py), and their choice of device.

Kept free of Jittor, so that ``--help`` and early errors answer without starting it.
"""
import os
import sys

# Set by Open MPI's and MPICH's launchers in every rank they start.
_MPI_LAUNCHER_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK")


def launched_by_mpirun():
    return any(k in os.environ for k in _MPI_LAUNCHER_VARIABLES)


def run(main):
    """``main()``'s exit status; under mpirun a failure on any rank (bad data, an exception,
    a non-zero status) ends every rank with "rank k: <error>" instead of leaving the
    others waiting in a collective. A file that cannot be written (``WriteError``: a full
    disk, a read-only folder...) is reported in two lines and exit status 1, without the
    traceback unless ``--debug`` is given. An interrupted run (``core.stopping``) ends at
    once."""
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
    from core import stopping
    if status in stopping.STATUSES:
        stopping.exit_now(status)
    return status


def write_error_message(error, script=None):
    """A ``WriteError`` in two lines: the script, the file and the cause; what to do."""
    script = script or os.path.basename(sys.argv[0])
    return f"{script}: {error}.\n{error.remedy}, then run it again."


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
