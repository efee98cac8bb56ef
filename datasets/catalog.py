"""The datasets this project knows, fact by fact, and the class list of any dataset.

Every fact about VideoEmotion-8, Ekman-6 and a dataset of your own classes that the code
needs is written here once: class names in index order, which classes are positive, the
folder and file names of a prepared dataset and where its split lists are. Everything
else imports them::

    from datasets.catalog import DATASETS
    ve8 = DATASETS["ve8"]
    ve8.classes.names          # ('Anger', 'Anticipation', ..., 'Trust')
    ve8.classes.positive       # ('Anticipation', 'Joy', 'Surprise', 'Trust')
    ve8.frames_folder          # 'VideoEmotion8--imgs'
    ve8.annotation_file(1)     # 've8_01.json'
    DATASETS["custom"].classes # None: a custom dataset's classes are its annotation's

``custom`` is any set of classes (``tools/prepare_dataset.py --dataset custom``): its
class names and polarity are written into its annotation when it is prepared, and its
split lists (given, or made with a seed) are kept in ``<root>/<split_lists>``.

A prepared dataset carries its own classes: the annotation json holds ``labels`` (class
names in index order, as in the release) and ``positive_classes`` (the names of the
positive classes, or null when the polarity is not known; this project's addition, which
the release's loader ignores). Checkpoints carry the same two entries in their ``meta``.
:class:`Classes` (``core/classes.py``) is that pair; :func:`make_classes` fills in the polarity from this table
for a file that does not state it (an annotation made by the release's tools, a
checkpoint of an older version) when its class list is one of the table's.

Nothing here imports Jittor, so the preparation tools and ``opts.py`` use it freely.
"""
import json
import os
from dataclasses import dataclass
from typing import Optional

from core.classes import Classes

#: The repository root (split lists ship under it).
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass(frozen=True)
class DatasetFacts:
    """One dataset: its classes and the names of its files once prepared."""
    name: str               # the --dataset value
    title: str
    classes: Optional[Classes]  # None: the annotation's (a custom dataset)
    frames_folder: str      # <root>/<frames_folder>/<Class>/<video_id>/000001.jpg ...
    audio_folder: str       # <root>/<audio_folder>/<Class>/<video_id>.mp3
    annotation_pattern: str  # <root>/<annotation file of split k>
    split_lists: str        # folder of classInd.txt, trainlistNN.txt, testlistNN.txt:
    #                         shipped under the repository, or (custom) under the root
    lists_in_root: bool = False

    def annotation_file(self, split=1):
        return self.annotation_pattern.format(split=split)

    @property
    def split_dir(self):
        """The shipped split lists (an absolute path); None for a dataset whose lists
        are its own (``lists_dir(root)``)."""
        return None if self.lists_in_root else os.path.join(REPO, self.split_lists)

    def lists_dir(self, root):
        """Where a prepared dataset under ``root`` keeps the split lists it was made from."""
        return os.path.join(root, self.split_lists) if self.lists_in_root else self.split_dir


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
    "custom": DatasetFacts(
        name="custom", title="your own classes", classes=None,
        frames_folder="custom--imgs", audio_folder="custom--mp3",
        annotation_pattern="custom_{split:02d}.json", split_lists="splits", lists_in_root=True),
}


def make_classes(names, positive=None):
    """:class:`Classes` of ``names``; ``positive`` (names) when given, else the table's
    polarity when ``names`` is one of its class lists, else unknown."""
    names = tuple(str(n) for n in names)
    if positive is None:
        for facts in DATASETS.values():
            if facts.classes is not None and facts.classes.names == names:
                return facts.classes
        return Classes(names)
    return Classes(names, tuple(str(p) for p in positive))


def classes_of_dataset(dataset, n_classes=None):
    """The table's classes of ``dataset``; for a dataset without them (custom, unknown),
    or when ``n_classes`` differs from their count, ``class_0 ... class_<n-1>`` without
    polarity."""
    facts = DATASETS.get(dataset)
    if facts is not None and facts.classes is not None and n_classes in (None, len(facts.classes)):
        return facts.classes
    if n_classes is None:
        if facts is not None:
            raise ValueError(f"the classes of a {dataset} dataset are those of its annotation "
                             f"or of its checkpoint, and neither was read")
        raise ValueError(f"unknown dataset {dataset!r} and no number of classes")
    return Classes(tuple(f"class_{i}" for i in range(int(n_classes))))


def number_of_classes(dataset):
    """The table's class count of ``dataset``; None when its annotation says (custom)."""
    facts = DATASETS.get(dataset)
    return None if facts is None or facts.classes is None else len(facts.classes)


def missing_dataset(opt):
    """Why no prepared dataset is where the options (``root_path``, ``annotation_path``,
    ``video_path``, ``audio_path``, ``dataset``) point, with how to make one; None when
    its three parts are there."""
    parts = (opt.annotation_path, opt.video_path, opt.audio_path)
    missing = [p for p in parts if not os.path.exists(p)]
    if not missing:
        return None
    return (f"no prepared dataset under {opt.root_path} (not found: {', '.join(missing)}).\n"
            f"Prepare one from a folder of mp4 files per class with:\n"
            f"    python tools/prepare_dataset.py --src RAW_VIDEOS --dst {opt.root_path} "
            f"--dataset {opt.dataset}\n"
            f"or try the whole chain on synthetic videos with:  make demo")


class AnnotationError(ValueError):
    """An annotation json that cannot be read or does not state its classes."""


def read_annotation(path):
    """``(classes, database)`` of an annotation json: its ``labels`` and
    ``positive_classes`` (the table's polarity when it states none and its labels are one
    of the table's lists) and its ``database`` dict. Raises AnnotationError naming the
    file and the problem."""
    try:
        with open(path, encoding="utf-8") as f:
            ann = json.load(f)
        labels, database = ann["labels"], ann["database"]
        if not isinstance(labels, list) or not labels or not isinstance(database, dict):
            raise TypeError("'labels' must be a non-empty list and 'database' a dict")
        return make_classes(labels, ann.get("positive_classes")), database
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise AnnotationError(f"cannot read annotation file {path}: "
                              f"{type(e).__name__}: {e}") from None


def dataset_classes(opt):
    """The classes of the prepared dataset the options point to; AnnotationError saying
    what is missing (``missing_dataset``) or what is wrong with its annotation."""
    missing = missing_dataset(opt)
    if missing:
        raise AnnotationError(missing)
    return read_annotation(opt.annotation_path)[0]


def classes_of_record(record, dataset=None, n_classes=None):
    """The classes an annotation or a checkpoint's meta (a dict) states in ``labels`` /
    ``positive_classes``; the table's for ``dataset`` when it states none (a release
    checkpoint) or states a different number of classes than ``n_classes``."""
    names = (record or {}).get("labels")
    if isinstance(names, (list, tuple)) and names and n_classes in (None, len(names)):
        return make_classes(names, record.get("positive_classes"))
    return classes_of_dataset(dataset, n_classes)
