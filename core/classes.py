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
