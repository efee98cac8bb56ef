"""The datasets this project knows, fact by fact, and the class list of any dataset.

Every fact about VideoEmotion-8 and Ekman-6 that the code needs is written here once:
class names in index order, which classes are positive, the folder and file names of a
prepared dataset and where its split lists ship. Everything else imports them::

    from datasets.catalog import DATASETS
    ve8 = DATASETS["ve8"]
    ve8.classes.names          # ('Anger', 'Anticipation', ..., 'Trust')
    ve8.classes.positive       # ('Anticipation', 'Joy', 'Surprise', 'Trust')
    ve8.frames_folder          # 'VideoEmotion8--imgs'
    ve8.annotation_file(1)     # 've8_01.json'

A prepared dataset carries its own classes: the annotation json holds ``labels`` (class
names in index order, as in the release) and ``positive_classes`` (the names of the
positive classes, or null when the polarity is not known; this project's addition, which
the release's loader ignores). Checkpoints carry the same two entries in their ``meta``.
:class:`Classes` is that pair; :func:`make_classes` fills in the polarity from this table
for a file that does not state it (an annotation made by the release's tools, a
checkpoint of an older version) when its class list is one of the table's.

Nothing here imports Jittor, so the preparation tools and ``opts.py`` use it freely.
"""
import os
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

#: The repository root (split lists ship under it).
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass(frozen=True)
class Classes:
    """Class names in index order and the names of the positive ones (None: unknown)."""
    names: Tuple[str, ...]
    positive: Optional[Tuple[str, ...]] = None

    def __post_init__(self):
        if self.positive is not None:
            unknown = [c for c in self.positive if c not in self.names]
            if unknown:
                raise ValueError(f"positive classes {unknown} are not among the classes "
                                 f"{list(self.names)}")

    def __len__(self):
        return len(self.names)

    @property
    def has_polarity(self):
        return self.positive is not None

    def positive_mask(self):
        """Boolean array, True where class i is positive; None when the polarity is unknown."""
        if self.positive is None:
            return None
        return np.array([name in self.positive for name in self.names], dtype=bool)

    def polarity_of(self, index):
        """``"positive"``, ``"negative"`` or None (polarity unknown) for class ``index``."""
        if self.positive is None:
            return None
        return "positive" if self.names[index] in self.positive else "negative"

    def to_json(self):
        """The two entries an annotation or a checkpoint carries."""
        return {"labels": list(self.names),
                "positive_classes": None if self.positive is None else list(self.positive)}


@dataclass(frozen=True)
class DatasetFacts:
    """One dataset: its classes and the names of its files once prepared."""
    name: str               # the --dataset value
    title: str
    classes: Classes
    frames_folder: str      # <root>/<frames_folder>/<Class>/<video_id>/000001.jpg ...
    audio_folder: str       # <root>/<audio_folder>/<Class>/<video_id>.mp3
    annotation_pattern: str  # <root>/<annotation file of split k>
    split_lists: str        # folder of classInd.txt, trainlistNN.txt, testlistNN.txt

    def annotation_file(self, split=1):
        return self.annotation_pattern.format(split=split)

    @property
    def split_dir(self):
        """The shipped split lists (an absolute path)."""
        return os.path.join(REPO, self.split_lists)


DATASETS = {
    "ve8": DatasetFacts(
        name="ve8", title="VideoEmotion-8",
        classes=Classes(("Anger", "Anticipation", "Disgust", "Fear", "Joy", "Sadness",
                         "Surprise", "Trust"),
                        positive=("Anticipation", "Joy", "Surprise", "Trust")),
        frames_folder="VideoEmotion8--imgs", audio_folder="VideoEmotion8--mp3",
        annotation_pattern="ve8_{split:02d}.json", split_lists="tools/annotations/ve8"),
    "ek6": DatasetFacts(
        name="ek6", title="Ekman-6",
        classes=Classes(("anger", "disgust", "fear", "joy", "sadness", "surprise"),
                        positive=("joy", "surprise")),
        frames_folder="Ekman6--imgs", audio_folder="Ekman6--mp3",
        annotation_pattern="ek6_{split:02d}.json", split_lists="tools/annotations/ek6"),
}


def make_classes(names, positive=None):
    """:class:`Classes` of ``names``; ``positive`` (names) when given, else the table's
    polarity when ``names`` is one of its class lists, else unknown."""
    names = tuple(str(n) for n in names)
    if positive is None:
        for facts in DATASETS.values():
            if facts.classes.names == names:
                return facts.classes
        return Classes(names)
    return Classes(names, tuple(str(p) for p in positive))


def classes_of_dataset(dataset, n_classes=None):
    """The table's classes of ``dataset``; for an unknown dataset, or when ``n_classes``
    differs from its class count, ``class_0 ... class_<n-1>`` without polarity."""
    facts = DATASETS.get(dataset)
    if facts is not None and n_classes in (None, len(facts.classes)):
        return facts.classes
    if n_classes is None:
        raise ValueError(f"unknown dataset {dataset!r} and no number of classes")
    return Classes(tuple(f"class_{i}" for i in range(int(n_classes))))


def classes_of_record(record, dataset=None, n_classes=None):
    """The classes an annotation or a checkpoint's meta (a dict) states in ``labels`` /
    ``positive_classes``; the table's for ``dataset`` when it states none (a release
    checkpoint) or states a different number of classes than ``n_classes``."""
    names = (record or {}).get("labels")
    if isinstance(names, (list, tuple)) and names and n_classes in (None, len(names)):
        return make_classes(names, record.get("positive_classes"))
    return classes_of_dataset(dataset, n_classes)


def polarity_mask(dataset, n_classes):
    """Boolean array over the ``n_classes`` classes of a known ``dataset``: True where
    positive."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {sorted(DATASETS)}")
    mask = DATASETS[dataset].classes.positive_mask()
    if len(mask) != n_classes:
        raise ValueError(f"{dataset} has {len(mask)} classes, not {n_classes}")
    return mask
