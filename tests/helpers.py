"""What several test modules share: tiny model configurations and small helpers.

Fixtures live in ``tests/conftest.py``; this module holds plain values and functions, which
test modules import (``from tests.helpers import TINY_FLAGS``), so no test module imports
another's.
"""
from datasets.catalog import DATASETS


def polarity_mask(dataset, n_classes):
    """Boolean array over the ``n_classes`` classes of a known ``dataset``: True where
    positive."""
    known = sorted(k for k, f in DATASETS.items() if f.classes is not None)
    if dataset not in known:
        raise ValueError(f"no table of classes for dataset {dataset!r}; expected one of {known}")
    mask = DATASETS[dataset].classes.positive_mask()
    if len(mask) != n_classes:
        raise ValueError(f"{dataset} has {len(mask)} classes, not {n_classes}")
    return mask


def snippet_indices(dataset, index):
    """The ``seq_len`` lists of frame indices that item ``index`` of a ``VE8Dataset`` reads
    (drawn as its ``__getitem__`` draws them)."""
    return dataset.recipe.snippets(dataset.data[index]["frame_indices"], dataset._rng(index))
