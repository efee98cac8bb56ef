"""TensorBoard event files of a training run, with the scalars the release wrote.

    board = TrainingBoard.open("results/demo", choice=None)   # None when not written
    board.batch(epoch, batch, n_batches, loss, acc)            # train/batch/loss, train/batch/acc
    board.epoch({"epoch": 3, "split": "train", "loss": .., "acc": .., "lr": ..})
    board.close()

Scalars (``tensorboard --logdir results/``): ``train/batch/loss`` and ``train/batch/acc``
at step ``(epoch - 1) * n_batches + batch``; ``train/epoch/loss``, ``train/epoch/acc``,
``train/lr``, ``val/loss`` and ``val/acc`` at step ``epoch``. The event files go into the
experiment's folder beside ``metrics.jsonl``. The writer is tensorboardX's (the
release's), else ``torch.utils.tensorboard``'s; ``choice`` None writes when one of them
can be imported, True insists (``TensorBoardMissing`` otherwise), False never writes.
"""

__all__ = ["TrainingBoard", "TensorBoardMissing", "summary_writer"]

#: The writer's thread puts what it was given on disk at least this often (its default,
#: 120 s, would hide a short run's last epochs from a TensorBoard already watching).
FLUSH_SECONDS = 2


class TensorBoardMissing(RuntimeError):
    """--tensorboard was asked for, and no writer can be imported."""


def summary_writer():
    """The ``SummaryWriter`` class of tensorboardX, else of torch.utils.tensorboard, else None."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return None
    return SummaryWriter


class TrainingBoard:
    """The scalars of one run into one ``SummaryWriter``."""

    def __init__(self, writer):
        self.writer = writer

    @classmethod
    def open(cls, folder, choice=None):
        """A board writing into ``folder``, or None (``choice`` False, or None and no
        writer installed)."""
        if choice is False:
            return None
        writer = summary_writer()
        if writer is None:
            if choice:
                raise TensorBoardMissing(
                    "--tensorboard: neither tensorboardX nor torch.utils.tensorboard can be "
                    "imported; install it with `pip install tensorboardX`, or leave the flag out")
            return None
        return cls(writer(folder, flush_secs=FLUSH_SECONDS))

    def batch(self, epoch, batch, n_batches, loss, acc):
        step = (epoch - 1) * n_batches + batch
        self.writer.add_scalar("train/batch/loss", loss, step)
        self.writer.add_scalar("train/batch/acc", acc, step)

    def epoch(self, record):
        """One line of metrics.jsonl (``epoch``, ``split`` "train" or "val", ``loss``,
        ``acc``, and ``lr`` for training)."""
        epoch, split = record["epoch"], record["split"]
        prefix = "train/epoch" if split == "train" else split
        for key in ("loss", "acc"):
            if record.get(key) is not None:
                self.writer.add_scalar(f"{prefix}/{key}", record[key], epoch)
        if record.get("lr") is not None:
            self.writer.add_scalar(f"{split}/lr", record["lr"], epoch)

    def close(self):
        """Everything written to disk, the file closed."""
        self.writer.close()
