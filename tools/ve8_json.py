"""Build the annotation json (``ve8_01.json`` / ``ek6_01.json``) from the split lists.

Usage (from the repository root)::

    python tools/ve8_json.py --split_dir tools/annotations/ve8 --dst ROOT/ve8_01.json
    python tools/ve8_json.py --dataset ek6 --dst ROOT/ek6_01.json      # lists in tools/annotations/ek6
    python tools/ve8_json.py --split_dir RAW/splits --dst ROOT/ve8_01.json --src RAW   # also check RAW

Input, in ``--split_dir``: ``classInd.txt`` (``<index from 1> <Class>``), ``trainlist01.txt``
(``<Class>/<video_id> <index>``) and ``testlist01.txt`` (``<Class>/<video_id>``, optionally
followed by the index, as in Ekman-6). Lines may end in CRLF, the last one may lack its
newline, and video ids may hold spaces, commas and other punctuation (the index is the
last blank-separated field). The label is the class named in the path.

Output::

    {"labels": [class names in index order],
     "positive_classes": [names of the positive classes] or null,
     "database": {video_id: {"subset": "training" | "validation",
                             "annotations": {"label": ClassName}}}}

training videos first, then validation ones, each in list order. ``positive_classes``
(the polarity, which the release's json lacks and its loader ignores) comes from the
dataset table (``datasets/catalog.py``) when the class names are VE-8's or Ekman-6's,
else it is null. The file is written atomically and left untouched (same mtime) when its
content would not change.
"""
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.atomic_file import write_atomically  # noqa: E402
from datasets.catalog import DATASETS, make_classes  # noqa: E402
from datasets.media import find_videos  # noqa: E402
from tools.jobs import print_list, tool_parser  # noqa: E402


class SplitError(ValueError):
    """A split list is malformed or inconsistent."""


@dataclass
class Entry:
    cls: str
    video_id: str
    subset: str  # "training" | "validation"
    line: str = ""


@dataclass
class Splits:
    """Lists as read: ``entries`` holds every line (an id listed twice appears twice)."""
    labels: List[str]
    entries: List[Entry]
    warnings: List[str] = field(default_factory=list)

    def annotation(self) -> dict:
        """The json object. Ids are json keys: an id listed twice keeps the place of its
        first line and the subset/label of its last one (the release's dict semantics)."""
        database = {}
        for e in self.entries:
            database[e.video_id] = {"subset": e.subset, "annotations": {"label": e.cls}}
        return dict(make_classes(self.labels).to_json(), database=database)


def split_files(split_dir, split: int = 1) -> Tuple[Path, Path, Path]:
    d = Path(split_dir)
    return d / "classInd.txt", d / f"trainlist{split:02d}.txt", d / f"testlist{split:02d}.txt"


def _lines(path: Path) -> List[Tuple[int, str]]:
    if not path.is_file():
        raise SplitError(f"missing split list: {path}")
    text = path.read_text(encoding="utf-8-sig")
    return [(n, l.strip()) for n, l in enumerate(text.splitlines(), 1) if l.strip()]


def read_class_ind(path) -> List[str]:
    """Class names in index order from ``classInd.txt`` (indices must be 1..K)."""
    path = Path(path)
    pairs = {}
    for n, line in _lines(path):
        parts = line.split(None, 1)
        if len(parts) != 2 or not parts[0].isdigit():
            raise SplitError(f"{path}:{n}: expected '<index> <ClassName>', got {line!r}")
        idx, name = int(parts[0]), parts[1].strip()
        if idx in pairs:
            raise SplitError(f"{path}:{n}: index {idx} given twice")
        pairs[idx] = name
    if sorted(pairs) != list(range(1, len(pairs) + 1)):
        raise SplitError(f"{path}: class indices must be 1..{len(pairs)}, got {sorted(pairs)}")
    names = [pairs[i] for i in range(1, len(pairs) + 1)]
    if len(set(names)) != len(names):
        raise SplitError(f"{path}: a class name is given twice")
    return names


def read_split_list(path, labels: List[str], subset: str, index_required: bool,
                    warnings: Optional[List[str]] = None) -> List[Entry]:
    """Entries of a train/test list; ``<Class>/<video_id>[ <index from 1>]`` per line."""
    path = Path(path)
    warnings = warnings if warnings is not None else []
    class_index = {name: i + 1 for i, name in enumerate(labels)}
    entries = []
    mismatched = []
    for n, line in _lines(path):
        item, idx = line, None
        parts = line.rsplit(None, 1)
        if len(parts) == 2 and parts[1].isdigit():
            cls_guess = parts[0].split("/", 1)[0]
            # In a test list a trailing number is the index only if it fits the class
            # (a VE-8 id could end in " 2"); a training list always ends with the index.
            if index_required or class_index.get(cls_guess) == int(parts[1]):
                item, idx = parts[0], int(parts[1])
        elif index_required:
            raise SplitError(f"{path}:{n}: expected '<Class>/<video_id> <index>', got {line!r}")
        if "/" not in item:
            raise SplitError(f"{path}:{n}: expected '<Class>/<video_id>', got {line!r}")
        cls, vid = item.split("/", 1)
        vid = vid.strip()
        if cls not in class_index:
            raise SplitError(f"{path}:{n}: class {cls!r} is not in classInd.txt ({', '.join(labels)})")
        if not vid or "/" in vid:
            raise SplitError(f"{path}:{n}: bad video id in {line!r}")
        if idx is not None and idx != class_index[cls]:
            mismatched.append(f"{path.name}:{n}: {item} has index {idx} but {cls} is {class_index[cls]}")
        entries.append(Entry(cls, vid, subset, line))
    if mismatched:
        warnings.append(f"{len(mismatched)} lines whose index disagrees with the class in their path "
                        f"(the path's class is used): " + "; ".join(mismatched[:5]))
    return entries


def read_splits(split_dir, split: int = 1) -> Splits:
    """Read classInd + train + test lists of ``split_dir``; warn about ids listed twice."""
    cind, train, test = split_files(split_dir, split)
    labels = read_class_ind(cind)
    warnings: List[str] = []
    entries = (read_split_list(train, labels, "training", True, warnings)
               + read_split_list(test, labels, "validation", False, warnings))
    seen: Dict[str, Entry] = {}
    for e in entries:
        old = seen.get(e.video_id)
        if old is not None:
            what = ("listed twice" if (old.cls, old.subset) == (e.cls, e.subset) else
                    f"listed as {old.cls}/{old.subset} and as {e.cls}/{e.subset}; the json keeps "
                    f"the later one ({e.cls}/{e.subset}), like the release")
            warnings.append(f"video id {e.video_id!r} is {what}")
        seen[e.video_id] = e
    return Splits(labels, entries, warnings)


def add_split_options(parser) -> None:
    """``--dataset``, ``--split_dir`` and ``--split``: which split lists to read."""
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="ve8")
    parser.add_argument("--split_dir", default=None,
                        help="folder with classInd.txt, trainlistNN.txt and testlistNN.txt "
                             "(default: the dataset's, tools/annotations/<dataset>)")
    parser.add_argument("--split", type=int, default=1, help="split number (trainlistNN.txt)")


def read_splits_of(args) -> Optional[Splits]:
    """The lists that ``add_split_options`` chose, their warnings printed; None (after
    printing why) when they cannot be used."""
    split_dir = Path(args.split_dir or DATASETS[args.dataset].split_dir)
    try:
        splits = read_splits(split_dir, args.split)
    except (SplitError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return None
    for w in splits.warnings:
        print(f"warning: {w}", file=sys.stderr)
    return splits


def write_json(obj, dst) -> bool:
    """Write ``obj`` as json to ``dst`` atomically; False (nothing written) if unchanged."""
    dst = Path(dst)
    text = json.dumps(obj, ensure_ascii=False, indent=None)
    if dst.is_file():
        try:
            if json.loads(dst.read_text(encoding="utf-8")) == obj:
                return False
        except (OSError, ValueError):
            pass
    dst.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(dst, lambda f: f.write(text.encode("utf-8")))
    return True


def describe(ann: dict) -> str:
    """``"8 classes, 731 training + 367 validation videos"``."""
    subsets = [v["subset"] for v in ann["database"].values()]
    return (f"{len(ann['labels'])} classes, {subsets.count('training')} training + "
            f"{subsets.count('validation')} validation videos")


def resolve_class_dir(src, cls: str) -> Path:
    """``src/cls``, or a folder whose name matches ``cls`` ignoring case."""
    src = Path(src)
    exact = src / cls
    if exact.is_dir() or not src.is_dir():
        return exact
    for p in src.iterdir():
        if p.is_dir() and p.name.lower() == cls.lower():
            return p
    return exact


def check_against_raw(splits: Splits, src) -> Tuple[Dict[Tuple[str, str], Path], List[str], List[str]]:
    """Match list entries with ``src/<Class>/<id>.<ext>``.

    Returns ``({(cls, id): video path}, missing ["Class/id"], unlisted ["Class/file"])``.
    """
    found: Dict[Tuple[str, str], Path] = {}
    missing, unlisted = [], []
    by_class: Dict[str, List[Entry]] = {}
    for e in splits.entries:
        by_class.setdefault(e.cls, []).append(e)
    for cls in splits.labels:
        videos = find_videos(resolve_class_dir(src, cls))
        listed = set()
        for e in by_class.get(cls, []):
            listed.add(e.video_id)
            if e.video_id in videos:
                found[(cls, e.video_id)] = videos[e.video_id]
            else:
                missing.append(f"{cls}/{e.video_id}")
        unlisted += [f"{cls}/{p.name}" for vid, p in videos.items() if vid not in listed]
    return found, missing, unlisted


def main(argv=None) -> int:
    parser = tool_parser("Build the annotation json (ve8_01.json / ek6_01.json) from classInd.txt, "
                         "trainlist01.txt and testlist01.txt.")
    add_split_options(parser)
    parser.add_argument("--dst", required=True, help="json file to write, e.g. ROOT/ve8_01.json")
    parser.add_argument("--src", default=None,
                        help="raw dataset folder (<Class>/<id>.mp4) to check the lists against")
    args = parser.parse_args(argv)
    splits = read_splits_of(args)
    if splits is None:
        return 1
    if args.src:
        _, missing, unlisted = check_against_raw(splits, args.src)
        if missing:
            print(f"warning: {len(missing)} listed videos have no file in {args.src}:", file=sys.stderr)
            print_list(missing, sys.stderr)
        if unlisted:
            print(f"note: {len(unlisted)} videos in {args.src} are in no list", file=sys.stderr)
    ann = splits.annotation()
    changed = write_json(ann, args.dst)
    print(f"{args.dst}: {describe(ann)} "
          f"({'written' if changed else 'unchanged, not rewritten'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
