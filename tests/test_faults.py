"""Faults on a training run, tried on real main.py processes (the tiny configuration of
test_train.py on the demo dataset): a full disk, a read-only or too small results folder,
Ctrl-C, SIGTERM, a second run into the same folder, and under mpirun a rank that dies.
Each ends with its few lines and exit status, leaves only complete files, and the run
resumed with the command it prints ends where the uninterrupted run (``full_run``) ends.

The filesystems are real: small tmpfs mounts, skipped (with the reason) where this user
may not mount; then a write failure is injected instead.
"""
import errno
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from core.checkpoint import load_checkpoint
from tests.helpers import (MPIRUN, assert_same_run, assert_same_weights, metrics_lines, mpi_env,
                           mpi_train_args, needs_mpirun, train_args)

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
STOP_S = 60  # a stop must come within a batch or two: generous for a loaded CPU machine


class Run:
    """main.py (or mpirun main.py) in its own process group, its stdout read as it comes."""

    def __init__(self, args, mpi=False):
        cmd = ([MPIRUN, "--oversubscribe", "-np", "2"] if mpi else []) + [PY, "main.py", *args]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, start_new_session=True,
                                     env=mpi_env() if mpi else None)
        self.lines, self.err = [], []
        threading.Thread(target=self._read, args=(self.proc.stdout, self.lines), daemon=True).start()
        threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True).start()

    @staticmethod
    def _read(stream, into):
        for line in stream:
            into.append(line)

    def wait_for(self, prefix, timeout=600):
        """Wait until a line of stdout starts with ``prefix``."""
        end = time.time() + timeout
        while not any(line.startswith(prefix) for line in self.lines):
            assert self.proc.poll() is None, f"ended early:\n{self.output()}"
            assert time.time() < end, f"no {prefix!r} within {timeout} s:\n{self.output()}"
            time.sleep(0.2)

    def finish(self, timeout=600):
        """``(exit status, seconds it took)``."""
        start = time.time()
        status = self.proc.wait(timeout=timeout)
        took = time.time() - start
        time.sleep(0.3)  # the reader threads catch up
        return status, took

    def output(self):
        return "".join(self.lines) + "".join(self.err)

    def stderr(self):
        return "".join(self.err)


def main_py(*args, timeout=600):
    return subprocess.run([PY, "main.py", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def resume_with_printed_command(stderr, mpi=False):
    """Run the resume command the message printed (under ``python main.py``)."""
    lines = stderr.splitlines()
    at = next(i for i, line in enumerate(lines)
              if re.search(r"resume with( \(it evaluates epoch \d+ first\))?:$", line.lower()))
    command = shlex.split(re.sub(r"^(rank \d+: )?\s+", "", lines[at + 1]))
    start = command.index("main.py")
    assert command[start - 1] == "python"
    launcher = [MPIRUN, "--oversubscribe"] + command[1:start - 1] if mpi else []
    return subprocess.run(launcher + [PY] + command[start:], cwd=ROOT, capture_output=True,
                          text=True, timeout=900, env=mpi_env() if mpi else None)


def assert_complete_files(folder):
    """Only complete files: every checkpoint loads, nothing temporary is left."""
    names = sorted(os.listdir(folder))
    assert not [n for n in names if n.endswith(".tmp")], names
    for n in names:
        if n.endswith(".npz"):
            load_checkpoint(folder / n)
    return names


# --------------------------------------------------------------------------------------
# Real small filesystems

def mount_tmpfs(path, size, read_only=False):
    """Mount a tmpfs of ``size`` bytes at ``path``; pytest.skip where that is not allowed."""
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip() or 'not root'}); the "
                    f"injected variant covers this")
    if read_only:
        subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)
    return path


@pytest.fixture()
def tmpfs(tmp_path):
    mounted = []

    def mount(size, read_only=False):
        mounted.append(mount_tmpfs(tmp_path / f"fs{len(mounted)}", size, read_only))
        return mounted[-1]
    yield mount
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def checkpoint_bytes(full_run):
    return (full_run / "save_1.npz").stat().st_size


@pytest.mark.slow
def test_disk_full_names_the_file_keeps_save_1_and_resumes(demo_data, full_run, tmpfs):
    """Room for 4.5 checkpoints (epoch 1 writes two, a start needs room for two more);
    filled once epoch 1 is done: writing save_2.npz fails. A few lines, exit 1, save_1.npz
    intact, no temporary file; once space is freed the printed command finishes the run
    as the uninterrupted one."""
    size = checkpoint_bytes(full_run)
    results = tmpfs(int(4.5 * size))
    run = Run(train_args(demo_data, results, "full", 2))
    run.wait_for("epoch 1/2")
    filler = results / "filler"
    free = shutil.disk_usage(results).free
    with open(filler, "wb") as f:  # leave less than a checkpoint
        os.posix_fallocate(f.fileno(), 0, max(free - size // 2, 1))
    status, _ = run.finish()
    err = run.stderr()
    folder = results / "full"
    assert status == 1, run.output()
    assert "Traceback" not in err
    lines = message(err, "main.py: ")
    assert re.fullmatch(rf"main.py: cannot write {re.escape(str(folder / 'save_2.npz'))}: "
                        r"the disk is full \(\d+\.\d MB free there\)\.", lines[0]), err
    assert lines[1] == f"Epoch 2's training is lost; the last checkpoint is {folder / 'save_1.npz'}."
    assert lines[2] == "Free some space there, then resume with:"
    names = assert_complete_files(folder)
    events = [n for n in names if n.startswith("events.out.tfevents.")]  # TensorBoard's
    assert len(events) <= 1 and sorted(set(names) - set(events)) == [
        "best.npz", "curves.png", "metrics.jsonl", "opts.json", "run.lock", "save_1.npz"]
    filler.unlink()
    proc = resume_with_printed_command(err)
    assert proc.returncode == 0, proc.stderr
    assert_same_run(folder, full_run)


def test_a_folder_that_cannot_be_written_stops_before_training(demo_data, full_run, tmpfs):
    """A read-only results folder and one with room for less than two checkpoints: exit
    2 before the first epoch, naming the folder and the cause."""
    read_only = tmpfs(1 << 20, read_only=True)
    proc = main_py(*train_args(demo_data, read_only, "ro", 1))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    print(proc.stderr)
    assert proc.stderr.strip().splitlines() == [
        f"main.py: error: cannot write {read_only / 'ro'}: the filesystem is read-only.",
        "Make that folder writable (or choose another one), then run it again."]
    small = tmpfs(checkpoint_bytes(full_run))
    proc = main_py(*train_args(demo_data, small, "small", 1))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert re.fullmatch(rf"main.py: error: {re.escape(str(small / 'small'))} has \d+\.\d MB free, "
                        r"less than two checkpoints of this model need \(\d+\.\d MB\); free some "
                        r"space or choose another --result_path", proc.stderr.strip())
    assert "epoch 1" not in proc.stdout
    assert os.listdir(small / "small") == ["run.lock"]


def test_write_failure_injected(demo_data, full_run, tmp_path, monkeypatch, capsys):
    """Where no filesystem can be mounted: save_2.npz's write fails with EDQUOT (in the
    process), the message says so, save_1.npz is intact, and the resume finishes the run."""
    import main as train_main
    from core import atomic_file

    real = atomic_file.tempfile.mkstemp

    def quota(*a, prefix="", **kw):
        if prefix.startswith(".save_2.npz"):
            raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))
        return real(*a, prefix=prefix, **kw)

    monkeypatch.setattr(atomic_file.tempfile, "mkstemp", quota)
    args = train_args(demo_data, tmp_path, "quota", 2, "--resume_path", str(full_run / "save_1.npz"))
    assert train_main.main(args) == 1
    err = capsys.readouterr().err
    folder = tmp_path / "quota"
    assert f"main.py: cannot write {folder / 'save_2.npz'}: the disk quota is used up (" in err
    assert "Free some space there, then resume with:" in err
    assert "save_2.npz" not in assert_complete_files(folder)
    monkeypatch.undo()
    command = shlex.split(err.strip().splitlines()[-1])
    assert command[:2] == ["python", "main.py"]
    assert train_main.main(command[2:]) == 0
    assert_same_weights(folder / "save_2.npz", full_run / "save_2.npz")


# --------------------------------------------------------------------------------------
# Signals and a second run

def message(stderr, first):
    """The lines of ``stderr`` from the one that starts with ``first`` on (progress bars,
    which end with carriage returns, apart), printed (``pytest -s`` shows them)."""
    lines = [line for line in re.split(r"[\r\n]", stderr) if line.strip()]
    at = [i for i, line in enumerate(lines) if line.startswith(first)]
    assert at, f"no line starts with {first!r} in:\n{stderr}"
    print("\n".join(lines[at[0]:]))
    return lines[at[0]:]


def test_ctrl_c_drops_the_epoch_in_progress_and_resumes_exactly(demo_data, full_run, tmp_path):
    """Ctrl-C (SIGINT to the whole process group, loader workers included, as a terminal
    sends it) in epoch 2's training: within seconds, exit 130, epoch 2 dropped, save_1.npz
    named with the resume command, which ends where the uninterrupted run ends."""
    folder = tmp_path / "ctrl_c"
    run = Run(train_args(demo_data, tmp_path, "ctrl_c", 2))
    run.wait_for("epoch 1/2")
    time.sleep(2)
    os.killpg(run.proc.pid, signal.SIGINT)
    status, took = run.finish()
    err = run.stderr()
    print(f"SIGINT to the process group: stopped in {took:.1f} s")
    assert status == 130, run.output()
    assert "Traceback" not in err and "quick exit" not in err, err
    lines = message(err, "main.py: ")
    assert lines[:3] == ["main.py: stopped by SIGINT.",
                         f"Epoch 2's training is lost; the last checkpoint is "
                         f"{folder / 'save_1.npz'}.",
                         "Resume with:"], err
    assert took < STOP_S
    assert "save_2.npz" not in assert_complete_files(folder)
    assert [(r["epoch"], r["split"]) for r in metrics_lines(folder)] == [(1, "train"), (1, "val")]
    proc = resume_with_printed_command(err)
    assert proc.returncode == 0, proc.stderr
    assert_same_run(folder, full_run)


def test_sigterm_in_an_evaluation_keeps_the_epoch(demo_data, full_run, tmp_path):
    """SIGTERM to the main process alone (as a scheduler sends it) during epoch 2's
    evaluation: exit 143, save_2.npz kept (not evaluated); the resumed run evaluates it
    and ends where the uninterrupted run ends."""
    folder = tmp_path / "term"
    run = Run(train_args(demo_data, tmp_path, "term", 2))
    run.wait_for("epoch 1/2")
    while not (folder / "save_2.npz").exists():  # epoch 2's training is saved
        assert run.proc.poll() is None, run.output()
        time.sleep(0.05)
    run.proc.send_signal(signal.SIGTERM)
    status, took = run.finish()
    err = run.stderr()
    print(f"SIGTERM to the main process: stopped in {took:.1f} s")
    assert status == 143, run.output()
    assert "Traceback" not in err, err
    lines = message(err, "main.py: ")
    assert lines[:3] == ["main.py: stopped by SIGTERM.",
                         f"Epoch 2's training is saved in {folder / 'save_2.npz'}.",
                         "Resume with (it evaluates epoch 2 first):"], err
    assert took < STOP_S
    assert_complete_files(folder)
    assert load_checkpoint(folder / "save_2.npz")["meta"]["evaluated"] is False
    proc = resume_with_printed_command(err)
    assert proc.returncode == 0, proc.stderr
    assert_same_run(folder, full_run)


def _signal_in_block(deferring):
    """What a process that sends itself SIGTERM inside ``stop_on_signals`` (and, with
    ``deferring``, inside ``deferred()``) gets done: its lines and its exit status."""
    code = textwrap.dedent(f"""
        import contextlib, os, signal, sys, time
        from core.stopping import Interrupted, deferred, stop_on_signals
        try:
            with stop_on_signals():
                with deferred() if {deferring} else contextlib.nullcontext():
                    os.kill(os.getpid(), signal.SIGTERM)
                    time.sleep(0.5)  # Python has run the handler by now
                    print("checkpoint written", flush=True)
                    print("checkpoint recorded", flush=True)
                print("evaluating", flush=True)
        except Interrupted as e:
            print(e, flush=True)
            sys.exit(e.status)
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    return proc.stdout.splitlines(), proc.returncode


def test_a_stop_signal_waits_for_the_end_of_a_deferred_block():
    """main.py writes a checkpoint and records it in a ``deferred()`` block: a SIGTERM that
    comes in it stops the run once both are done, never between them (where the run would
    say an epoch is lost whose checkpoint is on disk). Control: outside the block the same
    signal stops the work at once."""
    assert _signal_in_block(True) == (["checkpoint written", "checkpoint recorded",
                                       "stopped by SIGTERM"], 143)
    assert _signal_in_block(False) == (["stopped by SIGTERM"], 143)


#: Test scripts' generator whose finalizer sleeps in C for ``bar(microseconds)``: a signal
#: that comes meanwhile is handled there, as in a progress bar the garbage collector closes.
SLOW_TO_CLOSE = """import ctypes


def bar(microseconds):
    try:
        yield 1
    finally:
        ctypes.CDLL(None).usleep(microseconds)  # the signal comes meanwhile
"""


def _stop_in_a_finalizer(handled_by):
    """A process whose SIGTERM handler runs in a generator's finalizer (the generator
    closed by the garbage collector while the signal comes, as a progress bar's may be),
    then goes on with ten batches: its output, error output and exit status."""
    code = SLOW_TO_CLOSE + textwrap.dedent(f"""
        import contextlib, os, signal, sys, threading
        from core import stopping

        def work():
            g = bar(300000)
            next(g)
            threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGTERM)).start()
            del g
            for batch in range(10):
                stopping.check()
                print("batch", batch, flush=True)

        if "{handled_by}" == "plain handler":
            def handler(signum, frame):
                raise KeyboardInterrupt(signum)
            signal.signal(signal.SIGTERM, handler)
            work()
        else:
            try:
                with stopping.stop_on_signals():
                    work()
            except stopping.Interrupted as e:
                print(e, flush=True)
                sys.exit(e.status)
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    return proc.stdout.splitlines(), proc.stderr, proc.returncode


def test_a_stop_signal_handled_in_a_finalizer_is_not_lost():
    """Once Python ran the handler in a finalizer, where its exception cannot propagate,
    the stop acts before the next batch, without a traceback. Control: a plain handler
    raising there loses the stop (printed, "Exception ignored in"), and the work goes on."""
    out, err, status = _stop_in_a_finalizer("stop_on_signals")
    assert (out, status) == (["stopped by SIGTERM"], 143), err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    out, err, status = _stop_in_a_finalizer("plain handler")
    assert "Exception ignored in" in err and out[-1] == "batch 9" and status == 0


def _stop_during_a_compile(ending, timeout):
    """A process like main.py compiling kernels (Jittor's compile pool of forked workers)
    when its process group gets SIGTERM, as a terminal's Ctrl-C or a scheduler sends it:
    the handler runs in a progress bar's finalizer, the compile fails, the script takes
    that failure for the stop and returns its status, which ends the process through
    ``ending``. ``(output, error output, exit status)``; the status None when the process
    had not ended within ``timeout`` seconds (the signal comes after 0.5 s)."""
    code = SLOW_TO_CLOSE + textwrap.dedent(f"""
        import atexit, multiprocessing, os, signal, sys, threading
        from core import entry, stopping

        def main():
            with stopping.stop_on_signals():
                pool = multiprocessing.Pool(2)  # as Jittor's, ended at exit
                atexit.register(pool.__exit__, None, None, None)
                pool.apply(int)  # its workers started, idle, one holding its queue's lock
                g = bar(2000000)
                next(g)
                threading.Timer(0.5, os.killpg, (0, signal.SIGTERM)).start()
                del g
                try:
                    raise RuntimeError("Run cmd failed")  # the compile the signal cut short
                except RuntimeError:
                    stop = stopping.underway()
                    print(stop, flush=True)
                    return stop.status

        sys.exit({ending}(main))
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return out.splitlines(), err, None
    return out.splitlines(), err, proc.returncode


def test_a_stop_signal_during_a_kernel_compile_ends_the_run_in_one_report():
    """The stop is reported once (by the script, not again on leaving the signal block)
    and the process ends at once: its compile workers, killed by the same signal, one of
    them holding the pool's queue lock, would make Python's teardown wait forever.
    Control: the same process ended through Python's teardown never ends."""
    out, err, status = _stop_during_a_compile("entry.run", 120)
    assert (out, err, status) == (["stopped by SIGTERM"], "", 143)
    out, err, status = _stop_during_a_compile("(lambda main: main())", 15)
    assert (out, status) == (["stopped by SIGTERM"], None), err


def test_an_ending_process_leaves_no_worker_a_pool_starts_meanwhile():
    """A process ending through ``exit_now`` while another thread keeps starting workers (as
    a pool replaces the workers a stop signal killed) leaves none behind: its output pipes
    close and it exits with its status, in each of 5 runs. Before the fork guard a worker
    started between the kills and the exit outlived the process in 6 of 10 runs, and a
    reader of its output (make, tee, this test) waited for ever."""
    code = textwrap.dedent(f"""
        import multiprocessing, sys, threading, time
        sys.path.insert(0, {str(ROOT)!r})
        from core import stopping
        sys.setswitchinterval(1e-6)  # hand the interpreter between the threads often

        def replace_workers():
            while True:
                multiprocessing.Process(target=time.sleep, args=(3600,), daemon=True).start()
                time.sleep(0.001)

        threading.Thread(target=replace_workers, daemon=True).start()
        time.sleep(0.2)
        stopping.exit_now(143)
    """)
    for _ in range(5):
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            _, err = proc.communicate(timeout=30)
        finally:
            subprocess.run(["pkill", "-KILL", "-g", str(proc.pid)])
        assert (proc.returncode, err) == (143, "")


def test_a_second_run_into_the_same_folder_refuses_naming_the_first(demo_data, tmp_path):
    first = Run(train_args(demo_data, tmp_path, "twice", 2))
    try:
        first.wait_for("training 2 epoch(s)")
        second = main_py(*train_args(demo_data, tmp_path, "twice", 2))
        assert first.proc.poll() is None
    finally:  # (SIGTERM: a child killed otherwise would end this Jittor process, see
        os.killpg(first.proc.pid, signal.SIGTERM)  # core/child_processes.py)
        first.proc.wait(timeout=120)  # (a stop that hangs fails here, not the whole suite)
    assert second.returncode == 2, second.stderr
    print(second.stderr)
    assert second.stderr.strip() == (
        f"main.py: error: {tmp_path / 'twice'} is in use by another run (process {first.proc.pid} "
        f"on {os.uname().nodename}); wait until it ends, or choose another --expr_name")
    assert "training" not in second.stdout


# --------------------------------------------------------------------------------------
# Under mpirun

def rank_pids(mpirun_pid):
    """``{rank: pid}`` of mpirun's rank processes."""
    ranks = {}
    for pid in map(int, subprocess.run(["pgrep", "-P", str(mpirun_pid)], capture_output=True,
                                       text=True).stdout.split()):
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        for item in environ:
            if item.startswith(b"OMPI_COMM_WORLD_RANK="):
                ranks[int(item.split(b"=")[1])] = pid
    return ranks


def gone(pids):
    return not [p for p in pids if Path(f"/proc/{p}").exists()
                and Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"]


@needs_mpirun
@pytest.mark.slow
def test_a_dead_rank_ends_the_job_naming_it_and_the_checkpoint(demo_data, mpi_full_run,
                                                                tmp_path):
    """SIGKILL to rank 1 in epoch 2's training: every process ends within 10 s, with a
    message naming rank 1, save_1.npz and the resume command, which ends the run where the
    uninterrupted one (``mpi_full_run``) ends."""
    folder = tmp_path / "mpi"
    run = Run(mpi_train_args(demo_data, tmp_path, "mpi"), mpi=True)
    run.wait_for("epoch 1/2")
    time.sleep(2)
    ranks = rank_pids(run.proc.pid)
    assert sorted(ranks) == [0, 1], ranks
    os.kill(ranks[1], signal.SIGKILL)
    status, took = run.finish()
    err = run.stderr()
    print(f"a dead rank: the job ended in {took:.1f} s")
    assert status != 0
    assert took < 10, err
    assert gone(ranks.values())
    lines = message(err, "rank 1 (process")
    assert lines[:2] == [
        f"rank 1 (process {ranks[1]}) died without a word (killed, out of memory or crashed); "
        f"stopping all 2 processes.",
        f"The last complete checkpoint is {folder / 'save_1.npz'}; resume with:"], err
    assert lines[2].startswith("    mpirun -np 2 python main.py ")
    assert "save_2.npz" not in assert_complete_files(folder)
    proc = resume_with_printed_command(err, mpi=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_run(folder, mpi_full_run)


def test_each_machine_of_a_job_has_one_watchdog_over_its_own_ranks():
    """Ranks 0, 1 and 3 on one machine, 2 and 4 on another: the first rank of each machine
    watches that machine's ranks, the others start no watchdog."""
    from core.distributed import machine_ranks

    machines = [7.0, 7.0, 9.0, 7.0, 9.0]
    assert [machine_ranks(machines, me) for me in range(5)] == [[0, 1, 3], [], [2, 4], [], []]


def test_a_dead_rank_is_named_even_when_mpirun_stopped_the_other_first(tmp_path):
    """Rank 1 gone without a word, rank 0 stopped by SIGTERM (mpirun's answer to the death,
    which may come before the watchdog's look): the watchdog names rank 1. A rank that
    failed on its own (status 1) says why itself: the watchdog says nothing."""
    from core import watchdog

    def ranks_gone(said_by_rank_0):
        state = tmp_path / f"said{said_by_rank_0}"
        state.mkdir()
        procs = [subprocess.Popen([PY, "-c", "import time; time.sleep(60)"]) for _ in range(2)]
        (state / "0").write_text(str(said_by_rank_0))
        for p in procs:
            p.kill()
            p.wait()
        pids = {r: p.pid for r, p in enumerate(procs)}
        return watchdog.watch(str(state), str(tmp_path / "run"), pids, "cmd"), pids

    first, pids = ranks_gone(143)
    assert first == (f"rank 1 (process {pids[1]}) died without a word (killed, out of memory "
                     f"or crashed); stopping all {{n}} processes.")
    assert ranks_gone(1)[0] is None
