"""One training epoch: forward, loss, backward, Adam step, with running metrics."""
import math
import time

import numpy as np
from tqdm import tqdm

from core import stopping


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


def train_epoch(epoch, loader, model, criterion, optimizer, progress=True, on_batch=None):
    """Train ``model`` over ``loader`` once; returns ``{"loss", "acc", "n", "time"}``
    (sample-weighted means over the epoch). Raises NonFiniteLossError on a NaN/inf loss,
    before the optimizer applies that batch. ``on_batch(epoch, batch, n_batches, loss,
    acc)`` is called after each batch with that batch's loss and accuracy."""
    model.train()
    start = time.time()
    total_loss, correct, seen = 0.0, 0, 0
    bar = tqdm(loader, desc=f"epoch {epoch} train", unit="batch", disable=not progress,
               leave=False, dynamic_ncols=True)
    try:
        for batch, (visual, target, audio, _) in enumerate(bar, 1):
            stopping.check()
            logits, *_ = model(visual, audio)
            loss = criterion(logits, target)
            value = loss.item()
            if not math.isfinite(value):
                raise NonFiniteLossError(f"training loss became {value} at epoch {epoch}, "
                                         f"batch {batch}")
            optimizer.step(loss)
            n = int(target.shape[0])
            pred = np.argmax(logits.numpy(), axis=1)
            right = int((pred == target.numpy()).sum())
            correct += right
            total_loss += value * n
            seen += n
            if on_batch is not None:
                on_batch(epoch, batch, len(loader), value, right / n)
            bar.set_postfix(loss=f"{total_loss / seen:.4f}", acc=f"{correct / seen:.3f}")
    finally:
        bar.close()  # also when interrupted: the message that follows starts a clean line
    return {"loss": total_loss / max(seen, 1), "acc": correct / max(seen, 1), "n": seen,
            "time": time.time() - start}
