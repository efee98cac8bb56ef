"""Predict the emotion of videos with a trained VAANet checkpoint: one video, folders of
them, or lists of paths, with the model loaded once.

Usage (from the repository root)::

    python predict.py clip.mp4 --checkpoint results/demo/best.npz
    python predict.py clip.mp4 --checkpoint results/demo/best.npz --top 3 --json
    python predict.py clip.mp4 --checkpoint results/demo/best.npz --report clip_attention.png
    python predict.py clips/ more.mp4 list.txt --checkpoint results/demo/best.npz --csv out.csv
    python predict.py clips/ --checkpoint results/demo/best.npz --csv out.csv --features out.npz
    python predict.py clip.mp4 --checkpoint vaanet_ve8.pth            # release file, release config

Inputs: video files (anything ffmpeg reads), folders (searched recursively for files
with a video extension: .mp4 .avi .mkv .webm .mov ...; other files are skipped and named
in a note) and text files (``.txt``, ``.lst``, ``.list``) listing one path per line
(relative to the list's folder; blank lines and lines starting with ``#`` are skipped).

Each video's frames and sound are extracted with ffmpeg into a temporary folder and made
into the evaluation set's sample (``datasets/video.py``), in ``--workers`` processes that
prepare the next videos while the model runs on the current one.

Output for one video: the top classes with their probabilities, the polarity (of the top
class, and the probability mass of the positive classes), and the temporal attention
(gamma) of every snippet with the time range of its frames in the video; ``--report PNG``
draws the middle frame of every snippet with its weight. For several videos: one line
per video and a progress bar. ``--json`` prints one JSON document per video instead, one
per line. ``--csv PATH`` writes one row per video (path, top class, the probability of
every class, polarity, status, error), appended as each video finishes; run again with
the same ``--csv``, the videos it already holds are skipped (those that failed are tried
again). ``--features NPZ`` saves every video's fused vector (what the classifier sees),
its visual and audio parts and the attention maps (keys and shapes: core/features.py);
a video is skipped only when it is in both files.

Model configuration and classes: from the checkpoint (this project's .npz stores the
options it was trained with, its class names and their polarity; ``model.py``), else from
the flags (release defaults: ResNet-101, 12 x 16 frames, 112 x 112, VE-8); flags given
explicitly always win.

Exit status: 0 when every video was predicted (or skipped as already done), 1 when at
least one video could not be read, ffmpeg crashing or killed on it included (each is
reported in its row and at the end; the others are still predicted), 2 for a usage
error found before any video is processed (a missing input or checkpoint, a CSV or
features file of other classes).
"""
import argparse
import csv
import io
import json
import os
import sys
import time

from datasets.media import VIDEO_EXTS

LIST_EXTS = (".txt", ".lst", ".list")
KEY_FRAME_HEIGHT = 120
FEATURES_SAVE_EVERY_S = 60.0


class PredictError(Exception):
    """A usage error: reported as one line on stderr, exit status 2."""


def build_parser():
    from opts import add_model_options

    p = argparse.ArgumentParser(
        prog="predict.py",
        description="Predict the emotion of videos with a VAANet checkpoint: the top classes, "
                    "the polarity and the temporal attention of one video, or a CSV, JSON lines "
                    "and features for many.",
        epilog="Exit status: 0 when every video was predicted or skipped; 1 when at least one "
               "video could not be read, ffmpeg crashing or killed on it included (its row and "
               "the summary at the end say why; the others are still predicted); 2 for a usage error found before any video is processed.")
    a = p.add_argument
    a("inputs", nargs="+", metavar="INPUT",
      help="video files, folders (searched recursively for video files) or text files "
           f"({', '.join(LIST_EXTS)}) listing paths, one per line")
    a("--checkpoint", required=True, help="checkpoint: this project's .npz or a release .pth")
    a("--csv", default=None, metavar="PATH",
      help="write one row per video here (appended as videos finish); a re-run skips the "
           "videos already in it")
    a("--json", action="store_true", help="print one JSON document per video, one per line")
    a("--features", default=None, metavar="NPZ",
      help="save every video's fused vector, its visual and audio parts and the attention maps "
           "to this .npz (see core/features.py)")
    a("--top", type=int, default=3, help="number of classes to list")
    a("--report", default=None, metavar="PNG",
      help="(one video) write a picture of the key frame of every snippet with its attention "
           "weight")
    a("--workers", type=int, default=2,
      help="processes that extract and prepare the next videos while the model runs "
           "(0: one after the other in this process)")
    a("--no_progress", action="store_true", help="no progress bar")
    add_model_options(p.add_argument_group(
        "model configuration (default: the checkpoint's training options, else the release's)"))
    a("--ffmpeg", default=None, metavar="PATH",
      help="ffmpeg binary (default: $FFMPEG_BINARY, else imageio-ffmpeg's, else PATH)")
    a("--no_cuda", action="store_true", help="run on the CPU even when a GPU is available")
    return p


def parse_args(argv=None):
    """``(args, checkpoint dict)``: the checkpoint's options are the parser's defaults, so
    that the flags given explicitly win. Checks the options first (PredictError)."""
    from core.checkpoint import CheckpointError, read_checkpoint_file
    from model import MODEL_OPTIONS, saved_options

    parser = build_parser()
    first = parser.parse_args(argv)
    if not os.path.isfile(first.checkpoint):
        raise PredictError(f"checkpoint not found: {first.checkpoint}")
    if first.top < 1:
        raise PredictError("--top must be at least 1")
    if first.workers < 0:
        raise PredictError("--workers must be 0 or more")
    try:
        ckpt = read_checkpoint_file(first.checkpoint)
    except (CheckpointError, OSError) as e:
        raise PredictError(f"cannot read checkpoint {first.checkpoint}: {e}")
    parser.set_defaults(**saved_options(ckpt.get("meta"), MODEL_OPTIONS, ckpt.get("state_dict")))
    return parser.parse_args(argv), ckpt


# --------------------------------------------------------------------------------------
# inputs

class Inputs:
    """The videos that the command-line inputs name, in order and without repeats.

    ``videos``: absolute paths; ``broken``: ``{path: why}`` for paths a list names that
    cannot be a video (they become failed rows); ``skipped``: files in searched folders
    that are not videos (by extension)."""

    def __init__(self, inputs):
        self.videos, self.broken, self.skipped = [], {}, []
        self._seen = set()
        for item in inputs:
            if not os.path.exists(item):
                raise PredictError(f"no such file or folder: {item}")
            self._add(item, None)
        if not self.videos:
            where = ", ".join(inputs)
            skipped = f" ({len(self.skipped)} other files skipped)" if self.skipped else ""
            raise PredictError(f"no video files in {where}{skipped}")

    def _video(self, path, why=None):
        path = os.path.abspath(path)
        if path in self._seen:
            return
        self._seen.add(path)
        self.videos.append(path)
        if why:
            self.broken[path] = why

    def _add(self, path, listed_in):
        if os.path.isdir(path):
            self._folder(path)
        elif not os.path.exists(path):
            self._video(path, f"no such file (listed in {listed_in})")
        elif path.lower().endswith(LIST_EXTS) and listed_in is None:
            self._list(path)
        else:
            self._video(path)

    def _folder(self, folder):
        for root, dirs, files in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if name.startswith("."):
                    continue
                path = os.path.join(root, name)
                if name.lower().endswith(VIDEO_EXTS):
                    self._video(path)
                else:
                    self.skipped.append(path)

    def _list(self, list_file):
        base = os.path.dirname(os.path.abspath(list_file))
        try:
            with open(list_file, encoding="utf-8-sig") as f:
                lines = f.read().splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise PredictError(f"cannot read the list {list_file}: {e}")
        for line in lines:
            line = line.strip()
            if line and not line.startswith("#"):
                self._add(os.path.join(base, os.path.expanduser(line)), list_file)


# --------------------------------------------------------------------------------------
# the CSV of results

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
            raise PredictError(f"cannot read --csv {self.path}: {e}")
        if text and not text.endswith("\n"):
            self._cut_off = True  # a row cut off by an interruption: dropped, done again
            text = text[:text.rfind("\n") + 1]
        records = list(csv.reader(io.StringIO(text)))
        if not records:
            return
        if records[0] != self.header:
            theirs = [h[len("prob_"):] for h in records[0] if h.startswith("prob_")]
            raise PredictError(
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
        from core.atomic_file import write_atomically
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


# --------------------------------------------------------------------------------------
# model and samples

def load_model(ckpt, args):
    """``(model, config, classes)`` for the checkpoint and the options."""
    from core.checkpoint import CheckpointError
    from model import checkpoint_classes, model_config, model_from_state_dict

    config = model_config(args)
    classes = checkpoint_classes(ckpt, config["dataset"])
    if len(classes) != config["n_classes"]:
        raise PredictError(f"checkpoint {args.checkpoint}: it has {len(classes)} classes, "
                           f"--n_classes says {config['n_classes']}")
    try:
        model = model_from_state_dict(ckpt["state_dict"], config)
    except CheckpointError as e:
        raise PredictError(f"checkpoint {args.checkpoint}: {e}")
    return model, config, classes


def prepare(video, config, ffmpeg, key_frames):
    """``(sample dict, None)`` or ``(None, why)``: never raises, so that one video's failure
    (in a worker process too) is that video's row."""
    from datasets.video import prepare_sample
    try:
        return prepare_sample(video, config, ffmpeg, key_frames), None
    except Exception as e:  # noqa: BLE001 - any failure is this video's, reported in its row
        return None, " ".join(str(e).split()) or type(e).__name__


def _ignore_interrupts():
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process decides what Ctrl-C does


class Samples:
    """The samples of ``videos``, in order, as ``(video, sample, why)`` (``prepare``).

    With ``workers`` > 0 (and more than one video) they are made in that many fresh
    processes (spawned: they never hold Jittor, and an ffmpeg that dies there is one
    video's failure), which start on creation and keep up to ``workers + 1`` videos
    ahead of the one being used, so that extraction overlaps the model's work."""

    def __init__(self, videos, config, ffmpeg=None, workers=2, key_frames=0):
        from collections import deque
        self.job = (config, ffmpeg, key_frames)
        self.workers = workers if len(videos) > 1 else 0
        self.upcoming, self.pending, self.pool = iter(videos), deque(), None
        if self.workers:
            self._new_pool()
            self._fill()

    def _new_pool(self):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        self.pool = ProcessPoolExecutor(max_workers=self.workers, initializer=_ignore_interrupts,
                                        mp_context=multiprocessing.get_context("spawn"))

    def _fill(self):
        while len(self.pending) < self.workers + 1:
            v = next(self.upcoming, None)
            if v is None:
                return
            self.pending.append((v, self.pool.submit(prepare, v, *self.job)))

    def __iter__(self):
        from concurrent.futures.process import BrokenProcessPool
        if not self.workers:
            for v in self.upcoming:
                yield (v,) + prepare(v, *self.job)
            return
        while self.pending:
            v, fut = self.pending.popleft()
            self._fill()
            try:
                sample, why = fut.result()
            except BrokenProcessPool:
                # a worker died (killed by a signal): this video fails, the others go on
                sample, why = None, "the process preparing it died (killed; out of memory?)"
                waiting = [pv for pv, _ in self.pending]
                self.close()
                self._new_pool()
                self.pending.clear()
                self.pending.extend((pv, self.pool.submit(prepare, pv, *self.job)) for pv in waiting)
            yield v, sample, why

    def close(self):
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None


def run_model(model, visual, audio, with_features=False):
    """``(probabilities [C], logits [C], gamma [S], features)`` for one sample; features
    (``core.features.batch_rows`` of the one video) only ``with_features``."""
    import numpy as np
    from core.jittor_setup import jt
    from core.evaluate import softmax
    from core.features import forward

    with jt.no_grad():
        logits, gamma, features = forward(model, jt.array(visual[None]), jt.array(audio[None]),
                                          with_rows=with_features)
        logits = logits.numpy().astype(np.float32)
        gamma = gamma.numpy().astype(np.float32)
    return softmax(logits)[0], logits[0], gamma[0], features


def summarize(video, checkpoint, sample, config, classes, meta, probs, logits, gamma, top):
    from core.checkpoint import trained_epochs
    from core.evaluate import json_safe
    from datasets.video import key_frame
    info = sample["info"]
    vfps = info.fps or 30.0
    order = sorted(range(len(probs)), key=lambda i: (-float(probs[i]), i))
    top = max(1, min(int(top), len(probs)))
    class_names = classes.names
    mask = classes.positive_mask()
    best = order[0]
    total = float(sum(float(g) for g in gamma))
    snips = []
    for i, snip in enumerate(sample["snippets"]):
        first, last = min(snip), max(snip)
        snips.append({
            "index": i + 1,
            "start_s": round((first - 1) / vfps, 3),
            "end_s": round(last / vfps, 3),
            "frames": [int(x) for x in snip],
            "looped": any(b <= a for a, b in zip(snip, snip[1:])),
            "key_frame": key_frame(snip),
            "gamma": float(gamma[i]),
            "weight": float(gamma[i]) / total if total > 0 else 0.0,
        })
    pos_prob = float(probs[mask].sum()) if mask is not None else None
    return {
        "video": os.path.abspath(video),
        "status": "ok",
        "duration_s": info.duration,
        "video_fps": info.fps,
        "n_frames": int(sample["n_frames"]),
        "has_sound": sample["has_sound"],
        "checkpoint": os.path.abspath(checkpoint),
        "checkpoint_epoch": trained_epochs(meta),
        "config": {k: json_safe(v) for k, v in config.items()},
        "prediction": {"class": class_names[best], "index": int(best), "prob": float(probs[best])},
        "top": [{"class": class_names[i], "index": int(i), "prob": float(probs[i])}
                for i in order[:top]],
        "probabilities": {class_names[i]: float(p) for i, p in enumerate(probs)},
        "logits": [float(x) for x in logits],
        "polarity": {
            "label": classes.polarity_of(best),
            "positive_prob": pos_prob,
            "negative_prob": None if pos_prob is None else float(1.0 - pos_prob),
        },
        "snippets": snips,
    }


def format_text(s):
    lines = []
    dur = f"{s['duration_s']:.2f} s" if s["duration_s"] is not None else "? s"
    fps = f"{s['video_fps']:g} fps" if s["video_fps"] else "? fps"
    lines.append(f"video: {s['video']} ({dur}, {fps}, {s['n_frames']} frames, "
                 f"sound: {'yes' if s['has_sound'] else 'no (silent track)'})")
    ep = f", epoch {s['checkpoint_epoch']}" if s["checkpoint_epoch"] is not None else ""
    lines.append(f"checkpoint: {s['checkpoint']}{ep}")
    lines.append("top classes:")
    width = max(len(t["class"]) for t in s["top"])
    for rank, t in enumerate(s["top"], 1):
        lines.append(f"  {rank}. {t['class']:<{width}}  {t['prob']:.4f}")
    pol = s["polarity"]
    if pol["label"] is None:
        lines.append("polarity: n/a")
    else:
        lines.append(f"polarity: {pol['label']} (P(positive) = {pol['positive_prob']:.4f})")
    lines.append(f"temporal attention ({len(s['snippets'])} snippets of "
                 f"{s['config']['snippet_duration']} frames):")
    for sn in s["snippets"]:
        loop = "  (loop-padded)" if sn["looped"] else ""
        lines.append(f"  #{sn['index']:<2d} {sn['start_s']:7.2f}-{sn['end_s']:.2f} s  "
                     f"frames {sn['frames'][0]}..{sn['frames'][-1]}  gamma {sn['gamma']:.4f}  "
                     f"weight {sn['weight']:.3f}{loop}")
    return "\n".join(lines)


def format_line(s):
    """One video in one line (several videos)."""
    pol = s["polarity"]["label"]
    return (f"{s['video']}: {s['prediction']['class']} {s['prediction']['prob']:.3f}"
            + (f" ({pol})" if pol else ""))


# --------------------------------------------------------------------------------------

class Run:
    """One predict.py call over its videos; ``failed`` maps each video that could not be
    predicted to why."""

    def __init__(self, args, ckpt):
        self.args, self.ckpt = args, ckpt
        self.inputs = Inputs(args.inputs)
        if args.report and len(self.inputs.videos) > 1:
            raise PredictError(f"--report draws one video; the inputs name "
                               f"{len(self.inputs.videos)}")
        from model import checkpoint_classes, model_config
        classes = checkpoint_classes(ckpt, model_config(args)["dataset"])
        # the output files are checked before the model is built or a video is touched
        self.csv = ResultsCSV(args.csv, classes.names) if args.csv else None
        self.table = self._features_table(classes) if args.features else None
        done = self.csv.done() if self.csv else set()
        if self.table is not None:
            done = {v for v in done if v in self.table}
        self.todo = [v for v in self.inputs.videos if v not in done]
        self.n_skipped = len(self.inputs.videos) - len(self.todo)
        self.failed = {}

    def _features_table(self, classes):
        from core.features import FeatureError, FeatureTable
        path = self.args.features
        if not os.path.exists(path):
            return FeatureTable(classes.names, classes.positive)
        try:
            table = FeatureTable.load(path)
        except FeatureError as e:
            raise PredictError(f"--features: {e}")
        if table.class_names != list(classes.names):
            raise PredictError(f"--features {path} holds features of other classes "
                               f"({', '.join(table.class_names)}): write to another file")
        return table

    def out(self, text):
        from tqdm import tqdm
        tqdm.write(text, file=sys.stdout)
        sys.stdout.flush()

    def execute(self):
        args = self.args
        single = len(self.inputs.videos) == 1
        if self.inputs.skipped:
            shown = ", ".join(self.inputs.skipped[:10]) + (" ..." if len(self.inputs.skipped) > 10 else "")
            print(f"predict.py: note: {len(self.inputs.skipped)} files in the folders are not "
                  f"videos and are skipped: {shown}", file=sys.stderr)
        if self.n_skipped:
            print(f"predict.py: {self.n_skipped} of {len(self.inputs.videos)} videos are already "
                  f"in {args.csv}" + (f" and {args.features}" if args.features else "")
                  + ": skipped", file=sys.stderr)
        if self.csv is not None:
            self.csv.start(redo=self.todo)
        if self.table is not None:
            self.table.drop(self.todo)
        if not self.todo:
            return None

        from model import model_config
        todo = [v for v in self.todo if v not in self.inputs.broken]
        # the first videos are extracted while the model is built
        samples = Samples(todo, model_config(args), args.ffmpeg, args.workers,
                          KEY_FRAME_HEIGHT if args.report else 0)
        try:
            return self._predict(samples, single)
        finally:
            samples.close()
            if self.table is not None:
                self.table.save(args.features)

    def _predict(self, samples, single):
        args = self.args
        from core import entry
        entry.choose_device(args.no_cuda)
        from core.jittor_setup import jt  # noqa: F401  (configures Jittor first)
        from tqdm import tqdm
        model, config, classes = load_model(self.ckpt, args)
        meta = self.ckpt.get("meta") or {}

        bar = tqdm(total=len(self.todo), unit="video", desc="predict",
                   disable=args.no_progress or single, file=sys.stderr, dynamic_ncols=True,
                   mininterval=0.5 if sys.stderr.isatty() else 30)
        last_save, summary, ready = time.time(), None, iter(samples)
        try:
            for video in self.todo:  # in the inputs' order
                if video in self.inputs.broken:
                    sample, why = None, self.inputs.broken[video]
                else:
                    _, sample, why = next(ready)
                if sample is None:
                    self._failed(video, why)
                else:
                    probs, logits, gamma, feats = run_model(model, sample["visual"], sample["audio"],
                                                            self.table is not None)
                    summary = summarize(video, args.checkpoint, sample, config, classes, meta,
                                        probs, logits, gamma, args.top)
                    if args.report:
                        from core.report import plot_attention
                        plot_attention(args.report, summary, sample["key_frames"])
                        summary["report"] = os.path.abspath(args.report)
                    self._done(video, summary, feats, single)
                    if self.table is not None and time.time() - last_save > FEATURES_SAVE_EVERY_S:
                        self.table.save(args.features)
                        last_save = time.time()
                bar.update(1)
        finally:
            bar.close()
        return summary

    def _done(self, video, summary, feats, single):
        if self.csv is not None:
            self.csv.append(self.csv.row(video, summary))
        if self.table is not None:
            self.table.add(video, None, {k: v[0] for k, v in feats.items()})
        if self.args.json:
            self.out(json.dumps(summary))
        elif single:
            self.out(format_text(summary)
                     + (f"\nreport: {summary['report']}" if "report" in summary else ""))
        else:
            self.out(format_line(summary))

    def _failed(self, video, why):
        self.failed[video] = why
        if self.csv is not None:
            self.csv.append(self.csv.row(video, error=why))
        if self.args.json:
            self.out(json.dumps({"video": video, "status": "failed", "error": why}))
        elif len(self.inputs.videos) > 1:
            self.out(f"{video}: FAILED")

    def report_failures(self):
        if not self.failed:
            return
        if len(self.inputs.videos) == 1:
            (video, why), = self.failed.items()
            print(f"predict.py: error: {why}" if video in why else f"predict.py: error: {video}: {why}",
                  file=sys.stderr)
            return
        print(f"predict.py: {len(self.failed)} of {len(self.inputs.videos)} videos could not be "
              f"predicted:", file=sys.stderr)
        for video, why in self.failed.items():
            print(f"  {video}: {why}", file=sys.stderr)


def main(argv=None):
    try:
        args, ckpt = parse_args(argv)
        run = Run(args, ckpt)
        run.execute()
    except PredictError as e:
        print("predict.py: error: " + " ".join(str(e).split()), file=sys.stderr)
        return 2
    run.report_failures()
    return 1 if run.failed else 0


if __name__ == "__main__":
    from core import entry
    sys.exit(entry.run(main))
