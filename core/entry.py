"""The ``__main__`` of the command-line scripts (main.py, test.py).

Kept free of Jittor, so that ``--help`` and early errors answer without starting it.
"""
import os

# Set by Open MPI's and MPICH's launchers in every rank they start.
_MPI_LAUNCHER_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK")


def launched_by_mpirun():
    return any(k in os.environ for k in _MPI_LAUNCHER_VARIABLES)


def run(main):
    """``main()``'s exit status; under mpirun a failure on any rank (bad data, an exception,
    a non-zero status) ends every rank with "rank k: <error>" instead of leaving the
    others waiting in a collective."""
    if launched_by_mpirun():
        from core.distributed import run_entry_point
        return run_entry_point(main)
    return main()
