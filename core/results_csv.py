"""A CSV of results, one row per item, that a run appends to and a re-run resumes.

    from core.results_csv import ResultsCSV
    table = ResultsCSV("out.csv", class_names)   # reads what an earlier run wrote
    todo = [v for v in videos if v not in table.done()]
    table.start(redo=todo)
    table.append(table.row(video, summary))      # or table.row(video, error=why)

predict.py's ``--csv``: the columns are path, top class, the probability of every class,
polarity, the probability of the positive classes, status and error. A file of other
classes, or one that cannot be read, is a ``core.entry.UsageError``.
"""
import csv
import io
import os

from core.atomic_file import write_atomically
from core.entry import UsageError


class ResultsCSV:
    """``--csv``: one row per video, appended (flushed and synced) as each video finishes.

    An interrupted run leaves every finished row, and at most a cut-off last line, which
    the next run drops. Rows are keyed by path: a re-run skips the videos whose row says
    ``ok`` and replaces the rows of the videos it does again (those that failed). The
    file is only ever rewritten as a whole through a temporary file and a rename."""

    def __init__(self, path, class_names):
        self.path = path
        self.class_names = list(class_names)
        self.header = (["path", "top_class"] + [f"prob_{c}" for c in self.class_names]
                       + ["polarity", "positive_prob", "status", "error"])
        self.rows, self._cut_off = {}, False
        if os.path.exists(path):
            self._read()

    def _read(self):
        try:
            with open(self.path, encoding="utf-8", newline="") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"cannot read --csv {self.path}: {e}")
        if text and not text.endswith("\n"):
            self._cut_off = True  # a row cut off by an interruption: dropped, done again
            text = text[:text.rfind("\n") + 1]
        records = list(csv.reader(io.StringIO(text)))
        if not records:
            return
        if records[0] != self.header:
            theirs = [h[len("prob_"):] for h in records[0] if h.startswith("prob_")]
            raise UsageError(
                f"--csv {self.path} holds rows of other classes ({', '.join(theirs) or 'none'}; "
                f"this checkpoint's are {', '.join(self.class_names)}): write to another file")
        for rec in records[1:]:
            if len(rec) == len(self.header):
                self.rows[rec[0]] = rec

    def done(self):
        """Paths whose row says ``ok``."""
        return {p for p, rec in self.rows.items() if rec[-2] == "ok"}

    def start(self, redo):
        """Prepare the file for appending: rows of the videos in ``redo`` and a cut-off
        line are dropped (by a rewrite), a new file gets its header."""
        drop = set(redo) & set(self.rows)
        if drop or self._cut_off or not os.path.exists(self.path):
            kept = [rec for p, rec in self.rows.items() if p not in drop]
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            write_atomically(self.path, lambda f: f.write(_csv_text([self.header] + kept)))
            self.rows = {rec[0]: rec for rec in kept}
            self._cut_off = False

    def append(self, rec):
        with open(self.path, "ab") as f:
            f.write(_csv_text([rec]))
            f.flush()
            os.fsync(f.fileno())
        self.rows[rec[0]] = rec

    def row(self, path, summary=None, error=None):
        """The row of a video: its summary (predict.py's dict), or the error that stopped it."""
        if summary is None:
            return [path, ""] + [""] * len(self.class_names) + ["", "", "failed", error]
        pol = summary["polarity"]
        return ([path, summary["prediction"]["class"]]
                + [f"{summary['probabilities'][c]:.6f}" for c in self.class_names]
                + [pol["label"] or "", "" if pol["positive_prob"] is None else f"{pol['positive_prob']:.6f}",
                   "ok", ""])


def _csv_text(records):
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(records)
    return buf.getvalue().encode("utf-8")
