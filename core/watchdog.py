"""Ending an MPI training job whose rank died, with a word on what is kept.

    python core/watchdog.py STATE_DIR FOLDER PIDS LAUNCHER COMMAND

The first rank on each machine of ``mpirun ... main.py`` starts one
(``core.distributed.watch_ranks``) with the process ids of the ranks on that machine
(``PIDS``: ``pid0,pid1,...``, ``-`` for a rank on another machine), their launcher's
(mpirun's, or Open MPI's daemon's) process id, the experiment folder and the command that
resumes the run (``@CHECKPOINT@`` stands for the checkpoint). Once the ranks of one
machine are gone, Open MPI ends the ranks on the others.

Every 0.1 s it checks that the ranks are alive. Each rank says how it ends, in
``STATE_DIR/<rank>`` (``core.distributed.say_ending``): 0 when it is done, its exit status
when it fails or is interrupted (and then says why itself). A rank that is gone without a
word died (killed, out of memory, crashed); the others would wait for it in their next
collective, and Open MPI notices late when the dead rank's loader workers keep its output
open. So the watchdog kills the other ranks at once (a rank waiting in a collective runs
no Python code, Jittor holds the interpreter lock there: only SIGKILL reaches it; what
it wrote is complete anyway, core/atomic_file.py) and prints which rank died, the last
complete checkpoint in the folder and the resume command, on mpirun's own stderr (the
job's output forwarding is closing by then). All ranks gone at once without a word
(mpirun itself interrupted, its ranks killed within a batch) gets the same lines.

The watchdog runs in a session of its own (signals meant for the job do not reach it)
and ends as soon as no rank on this machine is left, removing STATE_DIR.
"""
import os
import shlex
import shutil
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PLACEHOLDER = "@CHECKPOINT@"
POLL_S = 0.1
#: The status of a rank stopped by SIGTERM: what mpirun sends the other ranks once one has
#: died, sometimes before this watchdog sees it gone (a scheduler's SIGTERM reaches every
#: rank, and none dies without a word then).
STOPPED_BY_MPIRUN = 128 + signal.SIGTERM


def alive(pid):
    """Whether process ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    if os.path.isdir("/proc/self"):
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _ended(state_dir, rank):
    """The exit status rank ``rank`` said it ends with, or None."""
    try:
        with open(os.path.join(state_dir, str(rank))) as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return None


def resume_lines(folder, command):
    """The last complete checkpoint in ``folder`` and the command that resumes from it."""
    from core.experiment import latest_checkpoint
    checkpoint = latest_checkpoint(folder) if os.path.isdir(folder) else None
    if not checkpoint:
        return [f"No epoch had finished: start again (in a new --expr_name, or once {folder} "
                f"is removed)."]
    return [f"The last complete checkpoint is {checkpoint}; resume with:",
            "    " + command.replace(PLACEHOLDER, shlex.quote(checkpoint))]


def watch(state_dir, folder, ranks, command):
    """Wait until every rank is gone; returns the first line of what to say (None: the
    ranks ended, or said themselves why they stop)."""
    while True:
        time.sleep(POLL_S)
        gone = [r for r, pid in ranks.items() if not alive(pid)]
        said = {r: _ended(state_dir, r) for r in ranks}
        if any(status not in (None, 0, STOPPED_BY_MPIRUN) for status in said.values()):
            return None  # a rank failed or was interrupted, and says so itself
        died = [r for r in gone if said[r] is None]
        if not died:
            if len(gone) == len(ranks):
                return None
            continue
        if len(died) == len(ranks):
            return ("all {n} processes were stopped at once, before they could say so "
                    "(mpirun was interrupted or killed).")
        for r, pid in ranks.items():
            if r not in gone:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        return (f"rank {died[0]} (process {ranks[died[0]]}) died without a word (killed, "
                f"out of memory or crashed); stopping all {{n}} processes.")


def main(argv):
    state_dir, folder, pids, launcher, command = argv
    ranks = {r: int(p) for r, p in enumerate(pids.split(",")) if p != "-"}
    try:
        # mpirun's own stderr: the job's output forwarding may be closing already
        out = open(f"/proc/{launcher}/fd/2", "w")
    except OSError:
        out = sys.stderr
    try:
        first = watch(state_dir, folder, ranks, command)
        if first:
            lines = [first.format(n=len(pids.split(",")))] + resume_lines(folder, command)
            # on a line of its own: rank 0's progress bar may end the terminal's last line
            print("\n" + "\n".join(lines), file=out, flush=True)
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
