"""A dataset of your own classes (``--dataset custom``): its classes, its split, its lists.

    from tools.custom_dataset import CustomDatasetError, plan_custom
    plan = plan_custom("RAW", "ROOT", split_dir=None, test_fraction=1/3, seed=0,
                       positive="happy,calm")
    plan.splits.labels      # class names in index order (the class folders, sorted)
    plan.found              # {(class, video_id): video file}
    plan.positive           # ('calm', 'happy') or None (polarity unknown)
    plan.write_lists()      # a made split as ROOT/splits/classInd.txt, trainlist01.txt, testlist01.txt

``tools/prepare_dataset.py --dataset custom`` calls it before any extraction, so every
problem of the raw folder is reported before long work starts and nothing is written:

- the classes are the sub-folders of RAW that hold videos (sorted by name), or those of
  ``classInd.txt`` with ``--split_dir``; there must be at least two;
- video ids (file names without extension) must be unique across classes, as the
  annotation is keyed by them;
- without ``--split_dir`` the split is made here: in every class, the videos sorted by
  id are shuffled by ``random.Random("<seed>/<class>")`` and the first
  ``round(n * test_fraction)`` of them (at least 1, at most n - 1) are test videos. A
  class needs two videos for that. The same seed and videos give the same split, on any
  machine. It is written out in VE-8's list format (test lines carry the class index,
  as Ekman-6's do, so that an id ending in a number stays unambiguous) under the
  dataset root (``datasets.catalog``: ``DATASETS["custom"].lists_dir(root)``) so that it
  can be reused (``--split_dir``) and cited. Lists already there that hold another split
  are never overwritten;
- with ``--split_dir`` every class needs at least one training and one test video found;
- ``--positive_classes`` must name existing classes.
"""
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from core.atomic_file import write_text_if_changed
from datasets.catalog import DATASETS
from datasets.media import VIDEO_EXTS, find_videos
from tools.ve8_json import (Entry, SplitError, Splits, check_against_raw, read_splits,
                            resolve_class_dir, split_files)

CUSTOM = DATASETS["custom"]
DEFAULT_TEST_FRACTION = 1 / 3
DEFAULT_SEED = 0


class CustomDatasetError(ValueError):
    """The raw folder, the lists or the options cannot make a dataset; nothing was written."""


@dataclass
class CustomPlan:
    splits: Splits
    found: Dict[Tuple[str, str], Path]
    missing: List[str]
    unlisted: List[str]
    positive: Optional[Tuple[str, ...]]
    lists_dir: Optional[Path] = None          # where write_lists puts a made split
    notes: List[str] = field(default_factory=list)

    @property
    def made(self):
        return self.lists_dir is not None

    def annotation(self):
        return self.splits.annotation(self.positive)

    def write_lists(self):
        """Write a made split's lists (unchanged files are left alone); returns the folder."""
        if self.lists_dir is None:
            return None
        self.lists_dir.mkdir(parents=True, exist_ok=True)
        for path, text in lists_text(self.splits, self.lists_dir).items():
            write_text_if_changed(path, text)
        return self.lists_dir


# --------------------------------------------------------------------------- raw folder
def scan_classes(src) -> Tuple[Dict[str, Dict[str, Path]], List[str]]:
    """``({class: {video_id: file}}, folders without videos)`` of the sub-folders of ``src``."""
    classes, empty = {}, []
    for p in sorted(Path(src).iterdir()):
        if p.name.startswith(".") or not p.is_dir():
            continue
        videos = find_videos(p)
        if videos:
            classes[p.name] = videos
        else:
            empty.append(p.name)
    return classes, empty


def duplicate_ids(videos_by_class) -> Dict[str, List[str]]:
    """``{video_id: ["Class/file", ...]}`` for the ids found in more than one class."""
    where: Dict[str, List[str]] = {}
    for cls, videos in videos_by_class.items():
        for vid, path in videos.items():
            where.setdefault(vid, []).append(f"{cls}/{Path(path).name}")
    return {vid: places for vid, places in sorted(where.items()) if len(places) > 1}


def n_test_videos(n, test_fraction):
    """How many of a class's ``n`` videos are test videos: round(n * fraction), kept in 1..n-1."""
    return min(n - 1, max(1, math.floor(n * test_fraction + 0.5)))


def made_split(videos_by_class, test_fraction=DEFAULT_TEST_FRACTION, seed=DEFAULT_SEED) -> Splits:
    """The stratified split of ``{class: ids}`` (see the module docstring)."""
    labels = sorted(videos_by_class)
    train, test = [], []
    for cls in labels:
        ids = sorted(videos_by_class[cls])
        random.Random(f"{seed}/{cls}").shuffle(ids)
        k = n_test_videos(len(ids), test_fraction)
        test += [Entry(cls, vid, "validation") for vid in sorted(ids[:k])]
        train += [Entry(cls, vid, "training") for vid in sorted(ids[k:])]
    return Splits(labels, train + test)


def lists_text(splits: Splits, folder, split: int = 1) -> Dict[Path, str]:
    """``{path: text}`` of classInd.txt, trainlistNN.txt and testlistNN.txt in ``folder``."""
    index = {c: i + 1 for i, c in enumerate(splits.labels)}
    cind, train, test = split_files(folder, split)
    lines = {"training": [], "validation": []}
    for e in splits.entries:
        lines[e.subset].append(f"{e.cls}/{e.video_id} {index[e.cls]}\n")
    return {cind: "".join(f"{i} {c}\n" for c, i in index.items()),
            train: "".join(lines["training"]), test: "".join(lines["validation"])}


def _same_split(a: Splits, b: Splits) -> bool:
    key = lambda s: (list(s.labels), sorted((e.cls, e.video_id, e.subset) for e in s.entries))
    return key(a) == key(b)


def parse_positive(text, labels) -> Optional[Tuple[str, ...]]:
    """The class names of ``--positive_classes A,B,...`` (None when not given)."""
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise CustomDatasetError("--positive_classes names no class")
    unknown = [n for n in names if n not in labels]
    if unknown:
        hints = []
        for n in unknown:
            near = [c for c in labels if c.lower() == n.lower()]
            hints.append(f"{n!r}" + (f" (did you mean {near[0]!r}?)" if near else ""))
        raise CustomDatasetError(f"--positive_classes names classes that do not exist: "
                                 f"{', '.join(hints)}; the classes are: {', '.join(labels)}")
    return tuple(c for c in labels if c in names)  # index order


# --------------------------------------------------------------------------- the plan
def plan_custom(src, root, split_dir=None, test_fraction=DEFAULT_TEST_FRACTION,
                seed=DEFAULT_SEED, positive=None, split: int = 1) -> CustomPlan:
    """Check ``src`` (and the lists) and decide the dataset; raises CustomDatasetError
    naming every problem found. Writes nothing."""
    src, root = Path(src), Path(root)
    made = split_dir is None
    if made:
        videos_by_class, notes = _raw_classes(src)
    else:
        splits, videos_by_class = _listed_classes(src, split_dir, split)
        notes = []
    problems = _video_problems(src, videos_by_class, made)
    if problems:
        raise CustomDatasetError("\n".join(problems))
    if made:
        splits = made_split(videos_by_class, test_fraction, seed)
    labels = list(splits.labels)

    found, missing, unlisted = check_against_raw(splits, src)
    lists_dir = None
    if made:
        lists_dir = Path(CUSTOM.lists_dir(root))
        _check_old_lists(lists_dir, splits, split)
    else:
        _check_listed_subsets(splits, found, src, split_dir)
    return CustomPlan(splits, found, missing, unlisted, parse_positive(positive, labels),
                      lists_dir, notes)


def _raw_classes(src) -> Tuple[Dict[str, Dict[str, Path]], List[str]]:
    """``({class: {video_id: file}}, notes)`` of the class folders of ``src``; at least two."""
    videos_by_class, empty = scan_classes(src)
    notes = []
    if empty:
        notes.append(f"folders of {src} without videos ({', '.join(VIDEO_EXTS[:4])}, ...) "
                     f"are not classes: {', '.join(empty)}")
    if len(videos_by_class) < 2:
        raise CustomDatasetError(
            f"{src} must hold at least two class folders of videos (RAW/<Class>/<video>.mp4); "
            f"found {len(videos_by_class)}: {', '.join(videos_by_class) or 'none'}")
    return videos_by_class, notes


def _listed_classes(src, split_dir, split) -> Tuple[Splits, Dict[str, Dict[str, Path]]]:
    """``(splits, {class: {video_id: file}})`` of the lists of ``split_dir`` (at least two
    classes) and of their class folders in ``src``."""
    try:
        splits = read_splits(split_dir, split)
    except (SplitError, OSError) as e:
        raise CustomDatasetError(str(e)) from None
    if len(splits.labels) < 2:
        raise CustomDatasetError(f"{split_dir}: a dataset needs at least two classes, "
                                 f"classInd.txt names {len(splits.labels)}")
    return splits, {c: find_videos(resolve_class_dir(src, c)) for c in splits.labels}


def _video_problems(src, videos_by_class, made) -> List[str]:
    """What stops the videos from making a dataset (a split to be ``made`` needs two videos
    per class): one message per kind of problem, [] when none."""
    problems = []
    if made:
        few = [f"{c} ({len(v)} video{'s' if len(v) != 1 else ''})"
               for c, v in videos_by_class.items() if len(v) < 2]
        if few:
            problems.append(f"a split into training and test videos needs at least 2 videos per "
                            f"class; too few in {src}: {', '.join(few)}. Add videos, or give the "
                            f"split yourself with --split_dir")
    dups = duplicate_ids(videos_by_class)
    if dups:
        shown = "; ".join(f"{vid!r} in {', '.join(places)}" for vid, places in list(dups.items())[:10])
        problems.append(
            f"{len(dups)} video name(s) are in more than one class folder, and a video's name "
            f"(without extension) is its id in the annotation: {shown}"
            + (" ..." if len(dups) > 10 else "") + ". Rename them so that every name is unique")
    odd = [f"{c}/{v}" for c, vs in videos_by_class.items() for v in vs if v != v.strip() or "\n" in v]
    if odd:
        problems.append(f"video names that begin or end with blanks cannot be written in the "
                        f"split lists: {', '.join(map(repr, odd[:10]))}")
    return problems


def _check_listed_subsets(splits, found, src, split_dir) -> None:
    """Raises CustomDatasetError when a class of the given lists has no training or no test
    video among those ``found``."""
    subset = {(e.cls, e.video_id): e.subset for e in splits.entries}
    count = Counter((cls, subset[(cls, vid)]) for cls, vid in found)
    short = [f"{c} ({count[(c, 'training')]} training, {count[(c, 'validation')]} test)"
             for c in splits.labels if not count[(c, "training")] or not count[(c, "validation")]]
    if short:
        raise CustomDatasetError(
            f"every class needs at least one training and one test video, found in {src}; "
            f"the lists of {split_dir} leave too few for: {', '.join(short)}")


def _check_old_lists(lists_dir, splits, split) -> None:
    """Raises CustomDatasetError when ``lists_dir`` holds the lists of a split other than
    ``splits`` (they are never overwritten)."""
    cind, train, test = split_files(lists_dir, split)
    if not any(p.exists() for p in (cind, train, test)):
        return
    try:
        old = read_splits(lists_dir, split)
    except (SplitError, OSError):
        old = None
    if old is None or not _same_split(old, splits):
        raise CustomDatasetError(
            f"{lists_dir} holds the lists of another split of this dataset (made with "
            f"another --seed or --test_fraction, or from other videos), and they are "
            f"never overwritten: pass --split_dir {lists_dir} to keep that split, or "
            f"use another --dst for a new one")
