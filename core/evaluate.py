"""Evaluation of a VAANet model over a loader.

    from core.evaluate import evaluate
    result = evaluate(model, val_loader, criterion=get_loss(opt), desc="val 3")
    result.accuracy, result.loss          # top-1 accuracy in [0, 1], mean loss (or None)
    result.video_ids, result.targets      # list[str], int64 [n]
    result.logits, result.probs           # float32 [n, C] (probs: softmax of logits)
    result.gamma                          # float32 [n, S] temporal attention
    result.predictions                    # int64 [n], argmax of the logits
    result.features                       # with features=True: core.features.batch_rows
                                          # arrays of every video (fused, alpha, ...), else None
    result.key_frames                     # with key_frames=K: uint8 [n, S, K, K, 3], the
                                          # middle frame of every snippet as the model saw
                                          # it, scaled to K pixels; else None

``evaluate`` puts the model in eval mode (BatchNorm running statistics, no updates),
runs it under ``jt.no_grad()`` over every batch of the loader in the loader's order and
puts the model back in training mode afterwards if it was training. Every row of the
result is one video of the loader, in the order the loader served them.

The loss is the per-sample mean of ``criterion`` over the whole set: each batch's value
(a batch mean, as ``core.loss`` returns) weighted by the batch size.

Everything collected per batch goes through :class:`EvalAccumulator` (``add`` per
batch, ``result`` at the end). Under Jittor MPI (``mpirun -np N``) each rank's loader
serves a share of every batch (the last one padded with repeated videos);
``EvalAccumulator.gather`` collects every rank's rows on every rank, drops the repeats,
puts the rows back in the single-process order and recomputes the per-batch losses over
the global batches, so every rank returns the same result as one process would
(``result.extra["mpi_world_size"]`` records the number of processes).
"""
import sys
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

from core import stopping
from core.jittor_setup import jt

__all__ = ["EvalResult", "EvalAccumulator", "evaluate", "key_frame_thumbnails", "softmax",
           "json_safe"]


def softmax(logits):
    """Row-wise softmax of a ``[n, C]`` array, computed in float64, returned as float32."""
    x = np.asarray(logits, dtype=np.float64)
    if x.size == 0:
        return x.astype(np.float32)
    x = x - x.max(axis=1, keepdims=True)
    e = np.exp(x)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


@dataclass
class EvalResult:
    """Outputs of :func:`evaluate`; row ``i`` is video ``video_ids[i]``."""
    video_ids: List[str]
    targets: np.ndarray                 # int64 [n]
    logits: np.ndarray                  # float32 [n, C]
    probs: np.ndarray                   # float32 [n, C]
    gamma: np.ndarray                   # float32 [n, S]
    loss: Optional[float] = None        # mean over samples, None without a criterion
    accuracy: float = float("nan")      # top-1, in [0, 1]; nan for an empty set
    extra: dict = field(default_factory=dict)
    features: Optional[dict] = None     # {key: [n, ...] array} (core.features.batch_rows)
    key_frames: Optional[np.ndarray] = None   # uint8 [n, S, K, K', 3] (evaluate's key_frames)

    @property
    def n(self):
        return len(self.video_ids)

    @property
    def n_classes(self):
        return int(self.logits.shape[1]) if self.logits.ndim == 2 else 0

    @property
    def predictions(self):
        if self.n == 0:
            return np.zeros(0, dtype=np.int64)
        return self.logits.argmax(axis=1).astype(np.int64)

    @property
    def correct(self):
        return self.predictions == self.targets


def _numpy(x):
    return x.numpy() if isinstance(x, jt.Var) else np.asarray(x)


class EvalAccumulator:
    """Collects per-batch outputs; :meth:`result` concatenates them into an EvalResult."""

    def __init__(self):
        self.video_ids = []
        self.targets, self.logits, self.gamma = [], [], []
        self.loss_sum = 0.0
        self.loss_count = 0
        self.has_loss = False
        self.n_correct = 0

    def add(self, video_ids, targets, logits, gamma, batch_loss=None):
        """One batch: ``batch_loss`` is the criterion's batch mean (a float) or None."""
        video_ids = [str(v) for v in video_ids]
        targets = np.asarray(targets, dtype=np.int64).reshape(-1)
        logits = np.asarray(logits, dtype=np.float32)
        gamma = np.asarray(gamma, dtype=np.float32)
        n = len(video_ids)
        if not (targets.shape[0] == logits.shape[0] == gamma.shape[0] == n):
            raise ValueError(f"batch sizes disagree: {n} ids, {targets.shape[0]} targets, "
                             f"{logits.shape[0]} logits, {gamma.shape[0]} gamma rows")
        self.video_ids.extend(video_ids)
        self.targets.append(targets)
        self.logits.append(logits)
        self.gamma.append(gamma)
        if n:
            self.n_correct += int((logits.argmax(axis=1) == targets).sum())
        if batch_loss is not None:
            self.has_loss = True
            self.loss_sum += float(batch_loss) * n
            self.loss_count += n

    @property
    def n(self):
        return len(self.video_ids)

    def running(self):
        """``{'loss': .., 'acc': ..}`` so far (for a progress bar)."""
        out = {}
        if self.has_loss and self.loss_count:
            out["loss"] = f"{self.loss_sum / self.loss_count:.4f}"
        if self.n:
            out["acc"] = f"{self.n_correct / self.n:.4f}"
        return out

    def gather(self, order_ids, batch_size, criterion=None):
        """Under MPI: every rank's rows, on every rank, as a new accumulator.

        ``order_ids`` lists the video ids of the whole set in the order one process
        serves them; rows are de-duplicated by video id and put in that order.
        ``batch_size`` is the global batch size: the rows are re-added in batches of that
        size, each batch's loss recomputed with ``criterion`` (the single-process
        arithmetic, so the mean loss equals the single-process one). Without MPI
        returns ``self``.
        """
        from core import distributed

        if not distributed.in_mpi():
            return self
        position = {str(v): i for i, v in enumerate(order_ids)}
        unknown = [v for v in self.video_ids if v not in position]
        if unknown:
            raise RuntimeError(f"evaluation served videos the loader does not list: {unknown[:10]}")
        if self.logits:
            logits = np.concatenate(self.logits)
            targets = np.concatenate(self.targets)
            gamma = np.concatenate(self.gamma)
        else:
            logits = np.zeros((0, 0), np.float32)
            targets = np.zeros(0, np.int64)
            gamma = np.zeros((0, 0), np.float32)
        # A rank may hold no rows at all: agree on the widths (the largest) first.
        widths = np.zeros((distributed.world_size(), 2))
        widths[distributed.rank()] = logits.shape[1], gamma.shape[1]
        c, s = (int(w) for w in distributed.all_reduce_sum(widths).max(axis=0))
        n = len(self.video_ids)
        rows = np.zeros((n, 3 + c + s), np.float64)
        if n:
            rows[:, 0] = [position[v] for v in self.video_ids]
            rows[:, 1] = targets
            rows[:, 2] = 1.0
            rows[:, 3:3 + logits.shape[1]] = logits
            rows[:, 3 + c:3 + c + gamma.shape[1]] = gamma
        merged = {}
        for part in distributed.all_gather_rows(rows):
            for row in part:
                merged.setdefault(int(row[0]), row)
        out = EvalAccumulator()
        ordered = [merged[i] for i in sorted(merged)]
        all_rows = np.array(ordered).reshape(len(ordered), 3 + c + s)
        batch_size = max(int(batch_size), 1)
        for start in range(0, len(all_rows), batch_size):
            chunk = all_rows[start:start + batch_size]
            ids = [str(order_ids[int(i)]) for i in chunk[:, 0]]
            b_targets = chunk[:, 1].astype(np.int64)
            b_logits = chunk[:, 3:3 + c].astype(np.float32)
            b_gamma = chunk[:, 3 + c:].astype(np.float32)
            batch_loss = None
            if criterion is not None:
                loss = criterion(jt.array(b_logits), jt.array(b_targets.astype(np.int32)))
                batch_loss = float(_numpy(loss).reshape(-1)[0])
            out.add(ids, b_targets, b_logits, b_gamma, batch_loss)
        return out

    def result(self, n_classes=None):
        if self.logits:
            logits = np.concatenate(self.logits)
            targets = np.concatenate(self.targets)
            gamma = np.concatenate(self.gamma)
        else:
            c = int(n_classes or 0)
            logits = np.zeros((0, c), np.float32)
            targets = np.zeros(0, np.int64)
            gamma = np.zeros((0, 0), np.float32)
        dup = len(set(self.video_ids)) != len(self.video_ids)
        if dup:
            seen, twice = set(), []
            for v in self.video_ids:
                if v in seen:
                    twice.append(v)
                seen.add(v)
            raise RuntimeError(f"evaluation saw videos more than once: {twice[:10]}")
        n = len(self.video_ids)
        accuracy = float((logits.argmax(axis=1) == targets).mean()) if n else float("nan")
        loss = self.loss_sum / self.loss_count if self.has_loss and self.loss_count else None
        return EvalResult(video_ids=list(self.video_ids), targets=targets, logits=logits,
                          probs=softmax(logits), gamma=gamma, loss=loss, accuracy=accuracy)


def _expected_samples(loader):
    n = getattr(loader, "n_samples", None)
    return int(n) if n is not None else None


def key_frame_thumbnails(visual, size):
    """The middle frame of every snippet of a batch ``visual`` [B, S, 3, T, H, W] (a
    ``jt.Var`` or an array), scaled so that its longer side is ``size`` pixels: uint8
    ``[B, S, h, w, 3]``."""
    from PIL import Image

    t = visual.shape[3]
    frames = _numpy(visual[:, :, :, t // 2]).astype(np.uint8).transpose(0, 1, 3, 4, 2)
    b, s, h, w, _ = frames.shape
    scale = size / max(h, w)
    th, tw = max(1, round(h * scale)), max(1, round(w * scale))
    out = np.empty((b, s, th, tw, 3), np.uint8)
    for i in range(b):
        for k in range(s):
            out[i, k] = np.asarray(Image.fromarray(frames[i, k]).resize((tw, th), Image.BOX))
    return out


def evaluate(model, loader, criterion=None, desc="val", progress=True, features=False,
             key_frames=0):
    """Run ``model`` over every batch of ``loader`` (eval mode, no gradients).

    ``loader`` yields ``(visual, target, audio, video_ids)`` batches (a VE8Dataset set up
    by ``datasets.factory.make_loader(..., shuffle=False)``). ``criterion(logits, target)``
    returns a batch-mean loss (``core.loss.get_loss``). Returns an :class:`EvalResult`.
    A loader that drops its last batch would miss videos and is refused. With
    ``features``, ``result.features`` holds every video's vectors and attention (one
    process only); with ``key_frames`` (a size in pixels), ``result.key_frames`` holds
    the thumbnails of its snippets' middle frames (``key_frame_thumbnails``).
    """
    from core import distributed

    if getattr(loader, "drop_last", False):
        raise ValueError("evaluate() needs a loader that keeps its last batch "
                         "(make_loader(..., shuffle=False) does)")
    if (features or key_frames) and distributed.in_mpi():
        raise ValueError("features are collected in one process: run without mpirun")
    was_training = getattr(model, "is_train", True)
    model.eval()
    expected = _expected_samples(loader)
    bar = _progress_bar(loader, desc, progress)
    try:
        with jt.no_grad():
            acc, collected, thumbnails = _run_batches(model, bar, criterion, features,
                                                      key_frames)
    finally:
        bar.close()
        if was_training:
            model.train()
    in_mpi = distributed.in_mpi()
    if in_mpi:
        # Jittor's MPI loader gave this rank its share of every batch: collect them all.
        acc = acc.gather(_serving_order(loader), getattr(loader, "batch_size", 1) or 1,
                         criterion)
    if expected is not None and acc.n != expected:
        raise RuntimeError(f"evaluation saw {acc.n} videos, the loader has {expected}")
    result = acc.result(getattr(model, "n_classes", None))
    if in_mpi:
        result.extra["mpi_world_size"] = distributed.world_size()
    if features and collected:
        result.features = {k: np.concatenate([c[k] for c in collected]) for k in collected[0]}
    if key_frames and thumbnails:
        result.key_frames = np.concatenate(thumbnails)
    return result


def _progress_bar(loader, desc, progress):
    """A tqdm bar over ``loader`` on stderr (rare updates when stderr is not a terminal)."""
    from tqdm import tqdm

    try:
        total = len(loader)
    except TypeError:
        total = None
    return tqdm(loader, total=total, desc=desc, unit="batch", disable=not progress,
                dynamic_ncols=True, file=sys.stderr, leave=False,
                mininterval=0.5 if sys.stderr.isatty() else 30)


def _run_batches(model, bar, criterion, features, key_frames):
    """``(accumulator, feature rows, thumbnails)`` of every batch ``bar`` serves (the rows
    and thumbnails empty unless ``features`` and ``key_frames`` ask for them)."""
    from core.features import forward

    acc, collected, thumbnails = EvalAccumulator(), [], []
    for batch in bar:
        stopping.check()
        visual, target, audio, video_ids = batch
        logits, gamma, rows = forward(model, visual, audio, with_rows=features)
        if features:
            collected.append(rows)
        if key_frames:
            thumbnails.append(key_frame_thumbnails(visual, key_frames))
        batch_loss = None
        if criterion is not None:
            tgt = target if isinstance(target, jt.Var) else jt.array(np.asarray(target))
            batch_loss = float(_numpy(criterion(logits, tgt)).reshape(-1)[0])
        acc.add(list(video_ids), _numpy(target), _numpy(logits), _numpy(gamma), batch_loss)
        bar.set_postfix(acc.running(), refresh=False)
    return acc, collected, thumbnails


def _serving_order(loader):
    """Video ids of the whole set in the order a single process serves them."""
    sampler = getattr(loader, "sampler", None)
    n = _expected_samples(loader)
    if sampler is not None:
        indices = [int(i) for i in sampler.__iter__()]
    else:
        indices = list(range(n if n is not None else len(loader.data)))
    return [str(loader.data[i]["video_id"]) for i in indices]


def json_safe(v):
    """A checkpoint meta or config value as a plain JSON value (numpy scalars unwrapped)."""
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    try:
        return v.item()
    except (AttributeError, ValueError):
        return str(v)
