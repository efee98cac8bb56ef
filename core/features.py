"""Per-video features of VAANet in one ``.npz``: what ``test.py --features`` and
``predict.py --features`` write, for retrieval, clustering or a linear probe.

    import numpy as np
    f = np.load("features.npz")             # plain arrays: no pickle needed
    X, y = f["fused"], f["target"]          # [N, 768] what the classifier sees, true class or -1
    top = f["class_names"][f["logits"].argmax(1)]

Every per-video array has one row per video, row ``i`` being video ``video[i]``
(N videos, S snippets, P spatial positions, C classes, E the audio embedding size):

==================  ============  =========================================================
key                 shape         what
==================  ============  =========================================================
video               [N] str       the video id (test.py) or the video's path (predict.py)
target              [N] int64     true class index (test.py); -1 where unknown (predict.py)
fused               [N, 512+E]    the vector fed to the classifier ``av_fc``:
                                  ``logits = fused @ av_fc.weight.T + av_fc.bias``
visual              [N, 512]      its visual part (fSCT, ``fused[:, :512]``)
audio               [N, E]        its audio part (fA, ``fused[:, 512:]``; E = 256)
alpha               [N, S, P]     spatial attention of each snippet (P = 16 at 112x112)
beta                [N, S, 512]   channel attention of each snippet
gamma               [N, S]        temporal attention
audio_attention     [N, G]        audio attention over the G audio segments (G = 16)
logits              [N, C]        the classifier's output
class_names         [C] str       class names in index order
positive_classes    [k] str       the positive classes; absent when the polarity is unknown
==================  ============  =========================================================

:class:`FeatureTable` collects rows (``add_batch`` from a model's outputs, ``add``
row by row), reads a file back (``FeatureTable.load``) to extend it, and writes it
atomically (``save``): the file under its name is always a complete one.
"""
import os

import numpy as np

from core.atomic_file import make_folder, write_atomically

#: The per-video arrays, in the order they are written.
ROW_KEYS = ("video", "target", "fused", "visual", "audio", "alpha", "beta", "gamma",
            "audio_attention", "logits")


class FeatureError(ValueError):
    """A features file that cannot be read or extended."""


def batch_rows(out, n_visual):
    """Per-video arrays of one batch from a model's ``Outputs`` (``VAANet.outputs``):
    ``alpha`` [S, B, P] and ``beta`` [S, B, 512] come snippet-major and are made
    video-major; ``fused`` is split after its first ``n_visual`` columns."""
    def host(x):
        return np.asarray(x.numpy(), np.float32)

    fused = host(out.fused)
    return {"fused": fused, "visual": fused[:, :n_visual], "audio": fused[:, n_visual:],
            "alpha": host(out.alpha).transpose(1, 0, 2),
            "beta": host(out.beta).transpose(1, 0, 2),
            "gamma": host(out.gamma), "audio_attention": host(out.audio_attention),
            "logits": host(out.logits)}


def forward(model, visual, audio, with_rows=False):
    """A batch through VAANet's forward (``VAANet.outputs``): ``(logits, gamma, rows)``,
    with ``rows`` the batch's ``batch_rows`` when ``with_rows`` (else None)."""
    out = model.outputs(visual, audio)
    rows = batch_rows(out, model.ft_channels) if with_rows else None
    return out.logits, out.gamma, rows


class FeatureTable:
    """Rows of features keyed by video, with the class names (see the module docstring)."""

    def __init__(self, class_names, positive_classes=None):
        self.class_names = [str(c) for c in class_names]
        self.positive_classes = None if positive_classes is None else [str(c) for c in positive_classes]
        self.rows = {}  # video -> {key: array}, in insertion order

    def __len__(self):
        return len(self.rows)

    def __contains__(self, video):
        return str(video) in self.rows

    def add(self, video, target, arrays):
        """One video: ``arrays`` holds its row of every key of ``batch_rows``."""
        row = {k: np.asarray(arrays[k], np.float32) for k in ROW_KEYS[2:]}
        if row["logits"].shape != (len(self.class_names),):
            raise FeatureError(f"{video}: {row['logits'].shape[-1]} logits for "
                               f"{len(self.class_names)} classes")
        row["target"] = np.int64(-1 if target is None else target)
        self.rows[str(video)] = row

    def add_batch(self, videos, targets, arrays):
        """Several videos: ``arrays`` as ``batch_rows`` returns them; ``targets`` None: unknown."""
        for i, video in enumerate(videos):
            self.add(video, None if targets is None else int(targets[i]),
                     {k: v[i] for k, v in arrays.items()})

    def drop(self, videos):
        for v in videos:
            self.rows.pop(str(v), None)

    def arrays(self):
        """``{key: array}`` as written to the file."""
        videos = list(self.rows)
        out = {"video": np.array(videos, dtype=str)}
        out["target"] = np.array([self.rows[v]["target"] for v in videos], np.int64)
        for k in ROW_KEYS[2:]:
            if videos:
                out[k] = np.stack([self.rows[v][k] for v in videos])
            else:
                out[k] = np.zeros((0,), np.float32)
        out["class_names"] = np.array(self.class_names, dtype=str)
        if self.positive_classes is not None:
            out["positive_classes"] = np.array(self.positive_classes, dtype=str)
        return out

    def save(self, path):
        """Write the table to ``path`` (atomically); returns ``path``."""
        path = os.fspath(path)
        make_folder(os.path.dirname(os.path.abspath(path)))
        arrays = self.arrays()
        return write_atomically(path, lambda f: np.savez(f, **arrays))

    @classmethod
    def load(cls, path):
        """The table a features file holds (FeatureError when it is not one)."""
        try:
            with np.load(path, allow_pickle=False) as f:
                data = {k: f[k] for k in f.files}
        except (OSError, ValueError, EOFError) as e:
            raise FeatureError(f"{path} is not a readable features file: "
                               f"{type(e).__name__}: {e}") from None
        missing = [k for k in ROW_KEYS + ("class_names",) if k not in data]
        if missing:
            raise FeatureError(f"{path} is not a features file: it lacks {missing}")
        table = cls(data["class_names"].tolist(),
                    data["positive_classes"].tolist() if "positive_classes" in data else None)
        for i, video in enumerate(data["video"].tolist()):
            table.add(video, int(data["target"][i]), {k: data[k][i] for k in ROW_KEYS[2:]})
        return table
