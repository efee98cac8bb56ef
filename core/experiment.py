"""The results folder of one training run: ``<result_path>/<expr_name>/``.

    opts.json        the options used (one file per start; a resume appends opts.<k>.json)
    metrics.jsonl    one line per epoch and split: {"epoch", "split", "loss", "acc", ...}
    save_<epoch>.npz checkpoint after each epoch ({state_dict, optimizer, meta})
    best.npz         the checkpoint with the best validation accuracy so far
    curves.png       loss and accuracy per epoch

An existing folder is never deleted or overwritten: a new run refuses to start in it, and
a resumed run appends to it.
"""
import glob
import json
import os
import re

from core.checkpoint import save_checkpoint


class ExperimentExistsError(RuntimeError):
    pass


def latest_checkpoint(folder):
    """The ``save_<epoch>.npz`` with the highest epoch in ``folder``, or None."""
    found = []
    for path in glob.glob(os.path.join(folder, "save_*.npz")):
        m = re.fullmatch(r"save_(\d+)\.npz", os.path.basename(path))
        if m:
            found.append((int(m.group(1)), path))
    return max(found)[1] if found else None


class Experiment:
    def __init__(self, folder, opts_dict, resume=False):
        self.folder = folder
        if os.path.isdir(folder) and os.listdir(folder) and not resume:
            raise ExperimentExistsError(
                f"{folder} already holds an experiment; resume it with --resume_path "
                f"{folder} or choose another --expr_name")
        os.makedirs(folder, exist_ok=True)
        name = "opts.json"
        k = 1
        while os.path.exists(os.path.join(folder, name)):
            name = f"opts.{k}.json"
            k += 1
        self._write_json(os.path.join(folder, name), opts_dict)
        self.metrics_path = os.path.join(folder, "metrics.jsonl")

    @staticmethod
    def _write_json(path, obj):
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True)
        os.replace(tmp, path)

    def log(self, record):
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def read_metrics(self):
        if not os.path.exists(self.metrics_path):
            return []
        with open(self.metrics_path) as f:
            return [json.loads(line) for line in f if line.strip()]

    def drop_metrics_after(self, epoch):
        """On resume, forget lines of epochs that were under way (or redone) after ``epoch``."""
        kept = [r for r in self.read_metrics() if r["epoch"] <= epoch]
        tmp = self.metrics_path + ".tmp"
        with open(tmp, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in kept)
        os.replace(tmp, self.metrics_path)

    def save(self, epoch, model, optimizer, meta, best=False):
        """Write save_<epoch>.npz (and best.npz) atomically; returns the path."""
        state = model.state_dict()
        opt_state = optimizer.state_dict()
        path = os.path.join(self.folder, f"save_{epoch}.npz")
        save_checkpoint(path, state, opt_state, meta)
        if best:
            save_checkpoint(os.path.join(self.folder, "best.npz"), state, opt_state, meta)
        return path
