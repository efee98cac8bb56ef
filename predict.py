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
(gamma) of every snippet with the time range of its frames in the video; ``--report FILE``
draws all four attentions of the video (PNG, or SVG/PDF by the extension): every snippet's
key frame with its spatial map, the channel and temporal attention, the sound with the
audio attention, the class probabilities (``core/attention_plot.py``). For several
videos: one line per video and a progress bar. ``--json`` prints one JSON document per video instead, one
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
import json
import os
import sys
import time

from core import entry
from core.entry import UsageError
from datasets.inputs import LIST_EXTS, Inputs
from datasets.media import add_ffmpeg_option

FEATURES_SAVE_EVERY_S = 60.0


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
    a("--report", default=None, metavar="FILE",
      help="(one video) draw its four attentions: key frames with the spatial map, channel, "
           "temporal and audio attention, class probabilities (.png; .svg or .pdf by the "
           "extension)")
    a("--workers", type=int, default=2,
      help="processes that extract and prepare the next videos while the model runs "
           "(0: one after the other in this process)")
    a("--no_progress", action="store_true", help="no progress bar")
    add_model_options(p.add_argument_group(
        "model configuration (default: the checkpoint's training options, else the release's)"))
    add_ffmpeg_option(p)
    a("--no_cuda", action="store_true", help="run on the CPU even when a GPU is available")
    return p


def parse_args(argv=None):
    """``(args, checkpoint dict)``: the checkpoint's options are the parser's defaults, so
    that the flags given explicitly win. Usage errors: ``core.entry.UsageError``."""
    from model import MODEL_OPTIONS, parse_with_checkpoint

    args, ckpt = parse_with_checkpoint(build_parser(), argv, "checkpoint", MODEL_OPTIONS)
    if args.top < 1:
        raise UsageError("--top must be at least 1")
    if args.workers < 0:
        raise UsageError("--workers must be 0 or more")
    return args, ckpt


# --------------------------------------------------------------------------------------
# model

def load_model(ckpt, args):
    """``(model, config, classes)`` for the checkpoint and the options."""
    from core.checkpoint import CheckpointError
    from model import checkpoint_classes, model_config, model_from_state_dict

    config = model_config(args)
    classes = checkpoint_classes(ckpt, config["dataset"])
    if len(classes) != config["n_classes"]:
        raise UsageError(f"checkpoint {args.checkpoint}: it has {len(classes)} classes, "
                         f"--n_classes says {config['n_classes']}")
    try:
        model = model_from_state_dict(ckpt["state_dict"], config)
    except CheckpointError as e:
        raise UsageError(f"checkpoint {args.checkpoint}: {e}")
    return model, config, classes


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
            raise UsageError(f"--report draws one video; the inputs name "
                             f"{len(self.inputs.videos)}")
        from model import checkpoint_classes, model_config
        classes = checkpoint_classes(ckpt, model_config(args)["dataset"])
        from core.results_csv import ResultsCSV
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
            raise UsageError(f"--features: {e}")
        if table.class_names != list(classes.names):
            raise UsageError(f"--features {path} holds features of other classes "
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

        from datasets.video import Samples
        from model import model_config
        todo = [v for v in self.todo if v not in self.inputs.broken]
        # the first videos are extracted while the model is built
        samples = Samples(todo, model_config(args), args.ffmpeg, args.workers)
        try:
            return self._predict(samples, single)
        finally:
            samples.close()
            if self.table is not None:
                self.table.save(args.features)

    def _predict(self, samples, single):
        args = self.args
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
                    probs, logits, gamma, feats = run_model(
                        model, sample["visual"], sample["audio"],
                        self.table is not None or bool(args.report))
                    summary = summarize(video, args.checkpoint, sample, config, classes, meta,
                                        probs, logits, gamma, args.top)
                    if args.report:
                        from core.attention_plot import plot_video_attention
                        from datasets.audio import FRAME_SECONDS
                        from models.resnet3d import output_grid
                        plot_video_attention(args.report, summary, sample, feats, output_grid(
                            config["snippet_duration"], config["sample_size"]), FRAME_SECONDS)
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

    def failures(self):
        """The videos that could not be predicted, as ``core.entry.RunFailed`` (None: none)."""
        if not self.failed:
            return None
        if len(self.inputs.videos) == 1:
            (video, why), = self.failed.items()
            return entry.RunFailed(f"predict.py: error: {why}" if video in why
                                   else f"predict.py: error: {video}: {why}")
        return entry.RunFailed("\n".join(
            [f"predict.py: {len(self.failed)} of {len(self.inputs.videos)} videos could not be "
             f"predicted:"] + [f"  {video}: {why}" for video, why in self.failed.items()]))


def run(argv=None):
    args, ckpt = parse_args(argv)
    job = Run(args, ckpt)
    job.execute()
    failed = job.failures()
    if failed:
        raise failed


def main(argv=None):
    return entry.exit_status("predict.py", run, argv)


if __name__ == "__main__":
    sys.exit(entry.run(main))
