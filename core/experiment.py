"""The results folder of one training run: ``<result_path>/<expr_name>/``.

    opts.json        the options used (one file per start; a resume appends opts.<k>.json)
    metrics.jsonl    one line per epoch and split: {"epoch", "split", "loss", "acc", ...}
    save_<epoch>.npz checkpoint after each epoch ({state_dict, optimizer, meta}); written
                     before the epoch's evaluation (meta "evaluated": false) and again after it
    best.npz         the checkpoint with the best validation accuracy so far
    curves.png       loss and accuracy per epoch
    events.out.tfevents.*  the same scalars, and per batch, for TensorBoard (core/tensorboard.py)

An existing folder is never deleted or overwritten: a new run refuses to start in it, and
a resumed run appends to it.
"""
import glob
import json
import os
import re

from core.atomic_file import write_atomically
from core.checkpoint import save_checkpoint
from core.tensorboard import TrainingBoard


class ExperimentExistsError(RuntimeError):
    pass


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


class Experiment:
    """``tensorboard``: write event files too (None: when a writer is installed; True:
    ``core.tensorboard.TensorBoardMissing`` when none is)."""

    def __init__(self, folder, opts_dict, resume=False, tensorboard=False):
        self.folder = folder
        if os.path.isdir(folder) and os.listdir(folder) and not resume:
            raise ExperimentExistsError(
                f"{folder} already holds an experiment; resume it with --resume_path "
                f"{folder} or choose another --expr_name")
        os.makedirs(folder, exist_ok=True)
        self.board = TrainingBoard.open(folder, tensorboard)
        name = "opts.json"
        k = 1
        while os.path.exists(os.path.join(folder, name)):
            name = f"opts.{k}.json"
            k += 1
        _write_text(os.path.join(folder, name), json.dumps(opts_dict, indent=2, sort_keys=True))
        self.metrics_path = os.path.join(folder, "metrics.jsonl")

    def log(self, record):
        """One epoch's metrics of one split, to metrics.jsonl (and TensorBoard)."""
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
        if self.board is not None:
            self.board.epoch(record)

    def log_batch(self, epoch, batch, n_batches, loss, acc):
        """One training batch's loss and accuracy (TensorBoard only)."""
        if self.board is not None:
            self.board.batch(epoch, batch, n_batches, loss, acc)

    def close(self):
        """The end of the run: TensorBoard's events all on disk."""
        if self.board is not None:
            self.board.close()

    def read_metrics(self):
        return read_metrics(self.metrics_path)

    def drop_metrics_after(self, epoch):
        """On resume, forget lines of epochs that were under way (or redone) after ``epoch``."""
        kept = [r for r in self.read_metrics() if r.get("epoch", 0) <= epoch]
        _write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in kept))

    def save(self, epoch, model, optimizer, meta, best=False):
        """Write save_<epoch>.npz (and best.npz) atomically; returns the path. main.py
        writes it once after the epoch's training and again, with the evaluation's
        result in ``meta``, after its evaluation."""
        state = model.state_dict()
        opt_state = optimizer.state_dict()
        path = checkpoint_path(self.folder, epoch)
        save_checkpoint(path, state, opt_state, meta)
        if best:
            save_checkpoint(os.path.join(self.folder, "best.npz"), state, opt_state, meta)
        return path
