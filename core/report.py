"""Metrics, reports and figures: of an evaluation (``core.evaluate.EvalResult``) and of a
training run (``metrics.jsonl``). One video's attention: ``core/attention_plot.py``.

    from core.report import Report, plot_curves
    report = Report(result, classes, dataset="ve8")   # classes: core.classes.Classes
    report.print_report()                      # to stdout (or file=...)
    report.write_predictions_csv("predictions.csv")
    report.write_report_json("report.json")
    report.plot_confusion("confusion.png")
    plot_curves("metrics.jsonl", "curves.png") # training curves

Metrics (``report.metrics``, also the content of report.json):

- ``accuracy``: top-1 accuracy over all videos;
- ``per_class``: for each class its number of videos, correct predictions and accuracy
  (None for a class without videos) = diagonal / row sum of the confusion matrix;
- ``mean_class_accuracy``: mean of the defined per-class accuracies;
- ``polarity_accuracy``: share of videos whose predicted class has the polarity of the
  true class (``classes.positive``); None when the polarity of the classes is not known;
- ``confusion_matrix``: rows = true class, columns = predicted class, counts.

Figures use matplotlib's Agg canvas directly (no global backend switch, no display).
"""
import csv
import io
import json
import math
import os
import sys
from typing import Dict, Optional

import numpy as np

from core.atomic_file import make_folder, write_atomically
from core.experiment import read_metrics

__all__ = ["Report", "compute_metrics", "confusion_matrix", "polarity_accuracy",
           "curves_of", "curves_figure", "plot_curves"]


def confusion_matrix(targets, predictions, n_classes):
    """int64 ``[C, C]``: entry (i, j) counts videos of class i predicted as j."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(targets, np.int64), np.asarray(predictions, np.int64)), 1)
    return cm


def polarity_accuracy(targets, predictions, positive_mask):
    """Share of predictions with the true class's polarity (``positive_mask``: True where
    class i is positive); None when undefined (no videos, or ``positive_mask`` None: the
    polarity of the classes is not known)."""
    mask = positive_mask
    if mask is None or len(targets) == 0:
        return None
    return float((mask[np.asarray(targets)] == mask[np.asarray(predictions)]).mean())


def _num(x):
    """A JSON-safe float (None for nan/inf)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def compute_metrics(result, classes, dataset):
    """Dict of every metric of ``result`` for ``classes`` (``core.classes.Classes``; see
    the module docstring); JSON-ready."""
    class_names = [str(c) for c in classes.names]
    n_classes = len(class_names)
    if result.n and result.n_classes != n_classes:
        raise ValueError(f"{len(class_names)} class names for {result.n_classes} model outputs")
    preds = result.predictions
    cm = confusion_matrix(result.targets, preds, n_classes)
    per_class = []
    for i, name in enumerate(class_names):
        n = int(cm[i].sum())
        correct = int(cm[i, i])
        per_class.append({"index": i, "class": name, "n": n, "correct": correct,
                          "accuracy": correct / n if n else None})
    defined = [c["accuracy"] for c in per_class if c["accuracy"] is not None]
    n_total = int(result.n)
    return {
        "dataset": dataset,
        "n_videos": n_total,
        "n_classes": n_classes,
        "class_names": list(class_names),
        "accuracy": _num(int(np.trace(cm)) / n_total) if n_total else None,
        "n_correct": int(np.trace(cm)),
        "mean_class_accuracy": _num(float(np.mean(defined))) if defined else None,
        "polarity_accuracy": _num(polarity_accuracy(result.targets, preds,
                                                    classes.positive_mask())),
        "loss": _num(result.loss),
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
    }


def _pct(x):
    return "   n/a" if x is None else f"{100.0 * x:6.2f}"


class Report:
    """Metrics of one evaluation, with printing, files and plots."""

    def __init__(self, result, classes, dataset: str = "ve8", info: Optional[Dict] = None):
        self.result = result
        self.class_names = [str(c) for c in classes.names]
        self.dataset = dataset
        self.info = dict(info or {})   # extra JSON-safe facts (checkpoint, epoch, config)
        self.metrics = compute_metrics(result, classes, dataset)

    # ---- numbers ----------------------------------------------------------------------
    @property
    def accuracy(self):
        return self.metrics["accuracy"]

    @property
    def polarity_accuracy(self):
        return self.metrics["polarity_accuracy"]

    @property
    def confusion(self):
        return np.asarray(self.metrics["confusion_matrix"], dtype=np.int64)

    # ---- text -------------------------------------------------------------------------
    def format_report(self):
        m = self.metrics
        lines = []
        for k, v in self.info.items():
            if isinstance(v, dict):
                v = ", ".join(f"{a}={b}" for a, b in v.items())
            lines.append(f"{k}: {v}")
        lines.append(f"videos: {m['n_videos']}   classes: {m['n_classes']} ({m['dataset']})")
        lines.append(f"top-1 accuracy:      {_pct(m['accuracy'])} %  ({m['n_correct']}/{m['n_videos']})")
        lines.append(f"mean class accuracy: {_pct(m['mean_class_accuracy'])} %")
        lines.append(f"polarity accuracy:   {_pct(m['polarity_accuracy'])} %")
        if m["loss"] is not None:
            lines.append(f"loss:                {m['loss']:.4f}")
        width = max([5] + [len(c) for c in self.class_names])
        lines.append("per class:")
        for c in m["per_class"]:
            lines.append(f"  {c['class']:<{width}}  {_pct(c['accuracy'])} %  ({c['correct']}/{c['n']})")
        lines.append("confusion matrix (rows: true, columns: predicted):")
        abbrev = [c[:6] for c in self.class_names]
        cw = max(6, len(str(self.confusion.max() if self.confusion.size else 0)))
        lines.append("  " + " " * width + "  " + " ".join(f"{a:>{cw}}" for a in abbrev))
        for name, row in zip(self.class_names, m["confusion_matrix"]):
            lines.append(f"  {name:<{width}}  " + " ".join(f"{v:>{cw}d}" for v in row))
        return "\n".join(lines)

    def print_report(self, file=None):
        print(self.format_report(), file=file or sys.stdout)

    # ---- files ------------------------------------------------------------------------
    def write_predictions_csv(self, path):
        """One row per video: video, true class, predicted class, prob_<class> columns."""
        r = self.result
        text = io.StringIO(newline="")
        w = csv.writer(text)
        w.writerow(["video", "true_class", "predicted_class"]
                   + [f"prob_{c}" for c in self.class_names])
        preds = r.predictions
        for i, vid in enumerate(r.video_ids):
            w.writerow([vid, self.class_names[int(r.targets[i])],
                        self.class_names[int(preds[i])]]
                       + [f"{float(p):.6f}" for p in r.probs[i]])
        return _write_file(path, text.getvalue().encode("utf-8"))

    def to_json(self):
        doc = dict(self.info)
        doc.update(self.metrics)
        return doc

    def write_report_json(self, path):
        text = json.dumps(self.to_json(), indent=2, allow_nan=False) + "\n"
        return _write_file(path, text.encode("utf-8"))

    # ---- plots --------------------------------------------------------------------------
    def plot_confusion(self, path, title=None):
        """Confusion matrix as a PNG: counts annotated, class names on both axes."""
        cm = self.confusion
        n = len(self.class_names)
        fig, canvas = _figure(figsize=(1.0 + 0.75 * max(n, 4), 0.8 + 0.65 * max(n, 4)))
        ax = fig.add_subplot(1, 1, 1)
        im = ax.imshow(cm, cmap="Blues", vmin=0, vmax=max(1, int(cm.max()) if cm.size else 1))
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        ax.set_xticks(range(n))
        ax.set_yticks(range(n))
        ax.set_xticklabels(self.class_names, rotation=45, ha="right")
        ax.set_yticklabels(self.class_names)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        acc = self.metrics["accuracy"]
        ax.set_title(title or f"{self.dataset}: top-1 {_pct(acc).strip()} %, "
                              f"{self.metrics['n_videos']} videos")
        thresh = cm.max() / 2.0 if cm.size else 0
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(int(cm[i, j])), ha="center", va="center",
                        color="white" if cm[i, j] > thresh else "black", fontsize=9)
        fig.tight_layout()
        return _write_png(canvas, path)


def _write_file(path, data):
    """``data`` (bytes) into ``path`` atomically, its folder made when missing."""
    make_folder(os.path.dirname(os.path.abspath(path)))
    return write_atomically(path, lambda f: f.write(data))


def _write_png(canvas, path):
    make_folder(os.path.dirname(os.path.abspath(path)))
    return write_atomically(path, canvas.print_png)


def _figure(figsize):
    from matplotlib.figure import Figure
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    fig = Figure(figsize=figsize, dpi=100)
    return fig, FigureCanvasAgg(fig)


# --------------------------------------------------------------------------------------
# Training curves

def curves_of(records):
    """``{split: {epoch: {'loss': .., 'acc': ..}}}`` from the epoch lines of metrics.jsonl
    (``core.experiment.read_metrics``). Lines without ``epoch`` and ``split`` and per-batch
    lines (with a ``batch``, ``iter`` or ``step`` key) are skipped, as are values that
    are not finite numbers; for a repeated (split, epoch) the last line wins (a resumed
    run rewrites its epochs)."""
    out: Dict[str, Dict[int, Dict[str, float]]] = {}
    for rec in records:
        if "epoch" not in rec or "split" not in rec:
            continue
        if any(k in rec for k in ("batch", "iter", "step")):
            continue
        try:
            epoch = int(rec["epoch"])
        except (TypeError, ValueError):
            continue
        vals = {}
        for k in ("loss", "acc"):
            v = rec.get(k)
            if isinstance(v, (int, float)) and math.isfinite(float(v)):
                vals[k] = float(v)
        out.setdefault(str(rec["split"]), {})[epoch] = vals
    return out


def curves_figure(data, title=None):
    """Loss and accuracy per epoch, one line per split, from ``curves_of``'s dict."""
    from matplotlib.ticker import MaxNLocator

    fig, _ = _figure(figsize=(11, 4.2))
    styles = {"train": dict(color="tab:blue", marker="o"), "val": dict(color="tab:orange", marker="s")}
    for col, (key, label) in enumerate((("loss", "loss"), ("acc", "top-1 accuracy"))):
        ax = fig.add_subplot(1, 2, col + 1)
        splits = [s for s in styles if s in data] + sorted(s for s in data if s not in styles)
        for split in splits:
            pts = sorted((e, v[key]) for e, v in data[split].items() if key in v)
            if not pts:
                continue
            xs, ys = zip(*pts)
            ax.plot(xs, ys, label=split, markersize=3, linewidth=1.5, **styles.get(split, {}))
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # no epoch 1.5
        ax.set_ylabel(label)
        ax.set_title(label)
        ax.grid(True, alpha=0.3)
        if ax.lines:
            ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_curves(metrics_jsonl_path, out_png, title=None):
    """Loss and accuracy per epoch, train and val, from ``metrics_jsonl_path`` -> PNG.

    Returns ``out_png``. A file without usable lines still gives a (labelled, empty) plot.
    """
    fig = curves_figure(curves_of(read_metrics(metrics_jsonl_path)), title)
    return _write_png(fig.canvas, out_png)
