"""Data-parallel helpers over Jittor's MPI (``mpirun -np N python main.py``).

Without MPI every function is the single-process identity, so callers need no branches.

- ``world_size()``, ``rank()``, ``is_main_process()``;
- ``all_reduce_sum(values)``: float64 sum over processes (numpy in, numpy out);
- ``broadcast_model(model)``: rank 0's parameters and buffers on every rank;
- ``average_metrics(metrics)``: sample-weighted training metrics over processes;
- ``all_gather_rows(rows)``: every process's ``[n_k, D]`` float64 rows, as a list;
- ``barrier()``: every process waits for the others;
- ``report(message)``: an error message on stderr, ``rank k: `` before each line under MPI;
- ``abort(message)`` / ``run_entry_point(main)``: a process that fails takes the whole
  MPI job down (``MPI_Abort``) with ``rank k: <error>`` on stderr, instead of leaving
  the other processes waiting forever in a collective;
- ``watch_ranks(folder, command)``: a rank that dies (killed, out of memory) ends the
  whole job within a second, with the last checkpoint of ``folder`` (``core/watchdog.py``).
"""
import ctypes
import os
import shutil
import subprocess
import sys
import tempfile
import traceback
import zlib

import numpy as np

from core import stopping
from core.atomic_file import WriteError
from core.jittor_setup import jt


def in_mpi():
    return bool(getattr(jt, "in_mpi", False)) and int(getattr(jt, "world_size", 1)) > 1


def world_size():
    return jt.world_size if jt.in_mpi else 1


def rank():
    return jt.rank if jt.in_mpi else 0


def is_main_process():
    return rank() == 0


def float64_var(values):
    """A float64 ``jt.Var`` holding ``values`` exactly (Jittor would round float64 input
    to float32 by default)."""
    values = np.ascontiguousarray(values, dtype=np.float64)
    with jt.flag_scope(auto_convert_64_to_32=0):
        return jt.array(values)


def all_reduce_sum(values):
    """Sum a float64 numpy array over processes (exactly in float64)."""
    values = np.asarray(values, dtype=np.float64)
    if not jt.in_mpi:
        return values
    # Jittor's MPI_Allreduce on int64 is wrong (MPI_DOUBLE_INT): always float64.
    return float64_var(values).mpi_all_reduce("add").numpy().reshape(values.shape)


def barrier():
    """Wait until every process gets here (a no-op without MPI)."""
    all_reduce_sum(np.zeros(1))


def average_metrics(metrics):
    """Sample-weighted mean of ``{"loss", "acc", "n", ...}`` over processes."""
    n, loss_sum, correct = all_reduce_sum(
        [metrics["n"], metrics["loss"] * metrics["n"], metrics["acc"] * metrics["n"]])
    out = dict(metrics)
    out.update(n=int(round(n)), loss=loss_sum / max(n, 1), acc=correct / max(n, 1))
    return out


def broadcast_model(model, root=0):
    """Copy every parameter and buffer of ``model`` (trainable or frozen, BatchNorm
    running statistics included) from rank ``root`` to every rank; a no-op without MPI.
    (Jittor's optimizer broadcasts only the parameters it trains, and ``set_global_seed``
    seeds each rank differently, so a frozen backbone would differ between ranks.)

    First (with or without MPI) every pending initialisation is computed: Jittor draws
    lazily-evaluated random numbers in execution order, so materialising the weights
    here makes a single process and rank 0 draw the same initial weights."""
    jt.sync_all(True)
    if not jt.in_mpi:
        return model
    for name, var in model.state_dict().items():
        if not isinstance(var, jt.Var):
            continue
        if str(var.dtype) == "int64":  # Jittor's MPI ops map int64 wrongly: go via float64
            var.update(var.float64().mpi_broadcast(root).int64())
        else:
            var.update(var.mpi_broadcast(root))
    jt.sync_all(True)
    return model


def all_gather_rows(rows):
    """Gather float64 ``rows`` (``[n_k, D]``, ``n_k`` may differ between processes, ``D``
    may not) from every process; returns the list ``[rows of rank 0, rows of rank 1, ...]``
    on every process. One process: ``[rows]``."""
    rows = np.asarray(rows, dtype=np.float64)
    if rows.ndim != 2:
        raise ValueError(f"all_gather_rows needs a 2-D array, got shape {rows.shape}")
    if not jt.in_mpi:
        return [rows]
    size, me = world_size(), rank()
    counts = np.zeros(size + 1, np.float64)
    counts[me] = rows.shape[0]
    counts[size] = rows.shape[1]
    counts = all_reduce_sum(counts)
    widths = counts[size]
    if widths != rows.shape[1] * size:
        raise RuntimeError(f"all_gather_rows: processes disagree on the row width "
                           f"(rank {me} has {rows.shape[1]}, total {widths:.0f} over {size})")
    counts = counts[:size].astype(np.int64)
    longest = max(int(counts.max()), 1)
    buf = np.zeros((size, longest, rows.shape[1]), np.float64)
    buf[me, :rows.shape[0]] = rows
    buf = all_reduce_sum(buf)
    return [buf[k, :counts[k]] for k in range(size)]


# --------------------------------------------------------------------------------------
# Failing the whole job

def _mpi_abort(code):
    """Call ``MPI_Abort(MPI_COMM_WORLD, code)`` of the Open MPI library Jittor loaded;
    returns only when that is not possible."""
    for name in ("libmpi.so.40", "libmpi.so", None):
        try:
            lib = ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL)
            world = ctypes.c_char.in_dll(lib, "ompi_mpi_comm_world")  # Open MPI's handle
            lib.MPI_Abort.argtypes = [ctypes.c_void_p, ctypes.c_int]
            lib.MPI_Abort(ctypes.addressof(world), int(code))
        except (OSError, ValueError, AttributeError):
            continue


def report(message):
    """Print ``message`` to stderr, each line prefixed with ``rank k: `` under MPI."""
    prefix = f"rank {rank()}: " if jt.in_mpi else ""
    sys.stdout.flush()
    print("\n".join(prefix + line for line in str(message).splitlines()), file=sys.stderr,
          flush=True)


def _state_dir():
    """Where the ranks on this machine say that they end (their parent is the same
    mpirun or Open MPI daemon)."""
    return os.path.join(tempfile.gettempdir(), f"vaanet-ranks-{os.getppid()}")


def say_ending(status):
    """Under MPI, tell the watchdog (core/watchdog.py) that this rank ends with ``status``
    (0: done; otherwise it says why itself)."""
    if not in_mpi() or not os.path.isdir(_state_dir()):  # no watchdog (test.py)
        return
    try:
        with open(os.path.join(_state_dir(), str(rank())), "w") as f:
            f.write(str(status))
    except OSError:
        pass


def watch_ranks(folder, command):
    """Under MPI, start core/watchdog.py on each machine of the job (by its first rank)
    for the ranks on that machine: one that dies ends the job with the last checkpoint in
    ``folder`` and ``command`` (the resume command, ``@CHECKPOINT@`` standing for the
    checkpoint). A collective: every rank calls it."""
    if not in_mpi():
        return
    n = world_size()
    me = np.zeros(2 * n)
    me[rank()], me[n + rank()] = os.getpid(), zlib.crc32(os.uname().nodename.encode())
    table = all_reduce_sum(me)
    watched = machine_ranks(table[n:], rank())
    if watched:  # the first rank on its machine
        shutil.rmtree(_state_dir(), ignore_errors=True)
        os.makedirs(_state_dir())
    barrier()  # every machine's state folder is made before any rank can say it ends
    if not watched:
        return
    pids = ",".join(str(int(table[k])) if k in watched else "-" for k in range(n))
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "watchdog.py")
    subprocess.Popen([sys.executable, script, _state_dir(), folder, pids, str(os.getppid()),
                      command], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     start_new_session=True)


def machine_ranks(machines, me):
    """The ranks that share rank ``me``'s machine when ``me`` is the first of them (its
    watchdog watches them), else an empty list. ``machines[k]``: rank k's machine, as a
    number."""
    mine = [k for k in range(len(machines)) if machines[k] == machines[me]]
    return mine if mine[0] == me else []


def abort(message, code=1):
    """Print ``rank k: message`` to stderr and end this process; under MPI the whole job
    ends (MPI_Abort), so no other rank waits in a collective. Never returns."""
    prefix = f"rank {rank()}: " if jt.in_mpi else ""
    say_ending(code or 1)
    try:
        sys.stdout.flush()
        print(f"{prefix}{message}", file=sys.stderr, flush=True)
    finally:
        if jt.in_mpi:
            _mpi_abort(code or 1)
        os._exit(code or 1)


def run_entry_point(main, argv=None):
    """Run ``main(argv)`` and return its exit status. Under MPI an exception or a non-zero
    status on any rank aborts every rank (exit status non-zero, ``rank k: ...`` on stderr)."""
    if not jt.in_mpi:
        return main(argv)
    try:
        status = main(argv)
    except SystemExit as e:
        status = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except WriteError as e:
        from core.entry import write_error_message
        abort(write_error_message(e), 1)
    except BaseException as e:  # noqa: BLE001  (any failure must end every rank)
        # an error after a stop signal (a kernel compile it cut short) is that stop
        if isinstance(e, KeyboardInterrupt) or stopping.underway():
            abort("interrupted", 130)
        tb = traceback.format_exc()
        abort(f"{e.__class__.__name__}: {e}\n{tb}"
              f"rank {rank()}: stopping all {world_size()} processes", 1)
    if status:
        abort(f"exiting with status {status}; stopping all {world_size()} processes", status)
    say_ending(0)
    return 0
