"""The classes of a model: their names in index order and which of them are positive.

    from core.classes import Classes      # also datasets.catalog.Classes
    c = Classes(("Anger", "Joy"), positive=("Joy",))
    c.positive_mask()                     # array([False,  True]); None: polarity unknown

Where the classes come from (the dataset table, an annotation, a checkpoint) is
``datasets/catalog.py``'s business; this is the pair itself, which the loss, the reports
and the features read, so the polarity of class i is worked out in one place.
"""
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np


@dataclass(frozen=True)
class Classes:
    """Class names in index order and the names of the positive ones (None: unknown)."""
    names: Tuple[str, ...]
    positive: Optional[Tuple[str, ...]] = None

    def __post_init__(self):
        if len(set(self.names)) != len(self.names):
            twice = sorted({n for n in self.names if self.names.count(n) > 1})
            raise ValueError(f"class names given more than once: {twice}")
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


def describe(classes, limit=10):
    """``"Anger, Anticipation, ..."``: the first ``limit`` names, for messages."""
    names = list(classes.names)
    return ", ".join(names[:limit]) + (", ..." if len(names) > limit else "")


def mismatch(trained_on, n_outputs, data, checkpoint, annotation):
    """Why the model in ``checkpoint`` cannot be used with the classes ``data`` of the
    annotation file ``annotation``, or None. ``trained_on``: the checkpoint's classes (None
    when it does not name them, a release file); ``n_outputs``: its classifier's outputs
    (None when not known). The scripts refuse such a pair before anything long starts."""
    if n_outputs is not None and n_outputs != len(data):
        theirs = f" ({describe(trained_on)})" if trained_on is not None else ""
        return (f"{checkpoint} holds a model of {n_outputs} classes{theirs}, {annotation} has "
                f"{len(data)} ({describe(data)})")
    if trained_on is not None and trained_on.names != data.names:
        return (f"{checkpoint} was trained on the classes {list(trained_on.names)}, "
                f"{annotation} has {list(data.names)}")
    return None
