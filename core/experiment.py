"""The results folder of one training run: ``<result_path>/<expr_name>/``.

    opts.json        the options used (one file per start; a resume appends opts.<k>.json)
    metrics.jsonl    one line per epoch and split: {"epoch", "split", "loss", "acc", ...}
    save_<epoch>.npz checkpoint after each epoch ({state_dict, optimizer, meta}); written
                     before the epoch's evaluation (meta "evaluated": false) and again after it
    best.npz         the checkpoint with the best validation accuracy so far (a hard link
                     to that epoch's save_<epoch>.npz where the filesystem has them)
    curves.png       loss and accuracy per epoch
    events.out.tfevents.*  the same scalars, and per batch, for TensorBoard (core/tensorboard.py)
    run.lock         locked (``lockf``) by the run writing into the folder; holds its PID

An existing folder is never deleted or overwritten: a new run refuses to start in it, and
a resumed run appends to it. Two runs never write into one folder at once: the second
refuses, naming the first's process. Every file is written atomically
(``core.atomic_file``): a failed write leaves the previous complete file.
"""
import fcntl
import glob
import json
import os
import re
import socket

import numpy as np

from core.atomic_file import (WriteError, free_space, human_size, link_atomically,
                              make_folder, write_atomically)
from core.checkpoint import save_checkpoint
from core.tensorboard import TrainingBoard

LOCK_FILE = "run.lock"


class ExperimentExistsError(RuntimeError):
    """The folder cannot take this run: it holds another experiment, another run is
    writing into it, or it has too little space."""


def read_metrics(path):
    """The records of a metrics.jsonl file, in order (``[]`` when it does not exist).
    Blank lines and lines that are not a JSON object are skipped (a line cut short by a
    crash, a hand edit)."""
    if not os.path.exists(path):
        return []
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                records.append(rec)
    return records


def _write_text(path, text):
    write_atomically(path, lambda f: f.write(text.encode("utf-8")))


def checkpoint_path(folder, epoch):
    """The checkpoint saved after ``epoch`` in an experiment folder."""
    return os.path.join(folder, f"save_{epoch}.npz")


def latest_checkpoint(folder):
    """The ``save_<epoch>.npz`` with the highest epoch in ``folder``, or None."""
    found = []
    for path in glob.glob(os.path.join(folder, "save_*.npz")):
        m = re.fullmatch(r"save_(\d+)\.npz", os.path.basename(path))
        if m:
            found.append((int(m.group(1)), path))
    return max(found)[1] if found else None


def _lock(folder):
    """Lock ``folder``'s run.lock for this process; returns its open file descriptor
    (the lock lasts until it is closed or the process ends). A POSIX record lock: the
    loader workers this process forks do not hold it, and it works over NFS."""
    path = os.path.join(folder, LOCK_FILE)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        raise WriteError(path, e) from e
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown"
        os.close(fd)
        raise ExperimentExistsError(
            f"{folder} is in use by another run ({holder}); wait until it ends, or choose "
            f"another --expr_name") from None
    return fd


class Experiment:
    """The folder of one run, locked for this process from construction on; ``start``
    writes the options once the run is sure to start. ``tensorboard``: write event files
    too (None: when a writer is installed; True: ``core.tensorboard.TensorBoardMissing``
    when none is)."""

    def __init__(self, folder, resume=False, tensorboard=False):
        self.folder = folder
        make_folder(folder)
        self._lock_fd = _lock(folder)
        if not resume and [n for n in os.listdir(folder) if n != LOCK_FILE]:
            self.close()
            raise ExperimentExistsError(
                f"{folder} already holds an experiment; resume it with --resume_path "
                f"{folder} or choose another --expr_name")
        holder = f"process {os.getpid()} on {socket.gethostname()}\n".encode()
        os.ftruncate(self._lock_fd, 0)
        os.pwrite(self._lock_fd, holder, 0)
        self.tensorboard, self.board = tensorboard, None
        self.metrics_path = os.path.join(folder, "metrics.jsonl")

    def close(self):
        """The end of the run: TensorBoard's events all on disk, the folder unlocked."""
        if getattr(self, "board", None) is not None:
            self.board.close()
            self.board = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def check_space(self, needed):
        """Refuse a folder with less than ``needed`` bytes free (ExperimentExistsError)."""
        free = free_space(self.folder)
        if free is not None and free < needed:
            raise ExperimentExistsError(
                f"{self.folder} has {human_size(free)} free, less than two checkpoints of "
                f"this model need ({human_size(needed)}); free some space or choose another "
                f"--result_path")

    def start(self, opts_dict):
        """Record the options (opts.json, or opts.<k>.json for a resumed run) and open the
        TensorBoard writer."""
        self.board = TrainingBoard.open(self.folder, self.tensorboard)
        name = "opts.json"
        k = 1
        while os.path.exists(os.path.join(self.folder, name)):
            name = f"opts.{k}.json"
            k += 1
        _write_text(os.path.join(self.folder, name),
                    json.dumps(opts_dict, indent=2, sort_keys=True))

    def log(self, record):
        """Append ``record`` to metrics.jsonl (rewritten atomically: never half a line),
        and to TensorBoard."""
        old = b""
        if os.path.exists(self.metrics_path):
            with open(self.metrics_path, "rb") as f:
                old = f.read()
        if old and not old.endswith(b"\n"):  # a line cut short by a crash stays apart
            old += b"\n"
        line = (json.dumps(record) + "\n").encode("utf-8")
        write_atomically(self.metrics_path, lambda f: f.write(old + line), durable=True)
        if self.board is not None:
            self.board.epoch(record)

    def log_batch(self, epoch, batch, n_batches, loss, acc):
        """One training batch's loss and accuracy (TensorBoard only)."""
        if self.board is not None:
            self.board.batch(epoch, batch, n_batches, loss, acc)

    def read_metrics(self):
        return read_metrics(self.metrics_path)

    def drop_metrics_after(self, epoch):
        """On resume, forget lines of epochs that were under way (or redone) after ``epoch``."""
        kept = [r for r in self.read_metrics() if r.get("epoch", 0) <= epoch]
        _write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in kept))

    def save(self, epoch, model, optimizer, meta, best=False):
        """Write save_<epoch>.npz (and best.npz) atomically; returns the path. main.py
        writes it once after the epoch's training and again, with the evaluation's
        result in ``meta``, after its evaluation. best.npz is a hard link to the file
        just written (a checkpoint is replaced, never changed in place), or a copy where
        the filesystem has no hard links."""
        state = model.state_dict()
        opt_state = optimizer.state_dict()
        path = checkpoint_path(self.folder, epoch)
        save_checkpoint(path, state, opt_state, meta)
        if best:
            best_path = os.path.join(self.folder, "best.npz")
            if not link_atomically(path, best_path, durable=True):
                save_checkpoint(best_path, state, opt_state, meta)
        return path


def checkpoint_size(model):
    """Bytes of one checkpoint of ``model`` (from the shapes): its state and the
    optimizer's two moments (Adam) of every trained parameter."""
    def nbytes(v):
        return int(np.prod(v.shape)) * np.dtype(str(v.dtype)).itemsize
    state = sum(nbytes(v) for v in model.state_dict().values() if hasattr(v, "shape"))
    return state + sum(2 * nbytes(p) for p in model.parameters() if p.requires_grad)
