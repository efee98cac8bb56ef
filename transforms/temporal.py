"""Temporal sampling of VAANet: "TSN" segments of consecutive frames (docs/release.md,
"One sample").

Randomness comes from an explicit ``rng`` argument (a ``numpy.random.Generator`` or a
``random.Random``), never from global state, so that a sample is a pure function of
(seed, epoch, index).
"""
import random

import numpy as np


def loop_pad(indices, size):
    """Append the list's elements again from the start until it holds ``size`` items.

    A list already at least ``size`` long is returned unchanged (as a new list).
    """
    indices = list(indices)
    if not indices:
        raise ValueError("cannot loop-pad an empty list of frame indices")
    out = list(indices)
    i = 0
    while len(out) < size:
        out.append(indices[i % len(indices)])
        i += 1
    return out


def randint_inclusive(rng, low, high):
    """A uniform integer in [low, high] (both ends included) from ``rng``."""
    if isinstance(rng, np.random.Generator):
        return int(rng.integers(low, high + 1))
    if isinstance(rng, random.Random):
        return rng.randint(low, high)
    raise TypeError(f"rng must be a numpy Generator or random.Random, not {type(rng).__name__}")


class TSN:
    """``seq_len`` snippets of ``snippet_duration`` consecutive frame indices.

    1. loop-pad the indices to at least ``seq_len * snippet_duration``;
    2. cut them into ``seq_len`` segments of ``len // seq_len`` indices (a remainder at the
       end is not used);
    3. from each segment take ``snippet_duration`` consecutive indices, starting at
       ``randint(0, max(0, len(seg) - size - 1))`` (inclusive; the release never picks the
       very last start, an off-by-one kept on purpose) in random mode, or at
       ``max(0, len(seg)//2 - size//2)`` with ``center=True``; a crop shorter than
       ``size`` is loop-padded.

    ``tsn(frame_indices, rng)`` returns a list of ``seq_len`` lists; ``rng`` may be omitted
    with ``center=True``. Random mode draws one integer per segment, in segment order.
    """

    def __init__(self, seq_len, snippet_duration, center=False):
        if seq_len < 1 or snippet_duration < 1:
            raise ValueError("seq_len and snippet_duration must be positive")
        self.seq_len = seq_len
        self.snippet_duration = snippet_duration
        self.center = center

    def __call__(self, frame_indices, rng=None):
        size = self.snippet_duration
        indices = loop_pad(frame_indices, self.seq_len * size)
        seg = len(indices) // self.seq_len
        snippets = []
        for i in range(self.seq_len):
            segment = indices[seg * i: seg * (i + 1)]
            if self.center:
                begin = max(0, len(segment) // 2 - size // 2)
            else:
                if rng is None:
                    raise ValueError("TSN in random mode needs an rng")
                begin = randint_inclusive(rng, 0, max(0, len(segment) - size - 1))
            snippets.append(loop_pad(segment[begin:begin + size], size))
        return snippets

    def __repr__(self):
        return f"TSN(seq_len={self.seq_len}, snippet_duration={self.snippet_duration}, center={self.center})"
