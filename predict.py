"""Predict the emotion of one video with a trained VAANet checkpoint.

Usage (from the repository root)::

    python predict.py clip.mp4 --checkpoint results/demo/save_10.npz
    python predict.py clip.mp4 --checkpoint results/demo/save_10.npz --top 3 --json
    python predict.py clip.mp4 --checkpoint results/demo/save_10.npz --report clip_attention.png
    python predict.py clip.mp4 --checkpoint vaanet_ve8.pth            # release file, release config

The video's frames and sound are extracted with ffmpeg (``datasets/media.py``, the same
commands as the dataset preparation) into a temporary folder that is removed afterwards.
The sample is the evaluation set's (``datasets/sample.py``, the same code): frame indices
``range(1, n_frames + 1, 30 // fps)`` over the frames actually extracted (also for a video
shorter than 16 frames, which the dataset tools would leave out), centre TSN snippets
(loop-padded when the video is too short), the ``val`` spatial transform, and the MFCC
features of the extracted mp3 (a video without sound gets a silent mp3, as in the
dataset tools).

Output: the top classes with their probabilities, the polarity (of the top class, and the
probability mass of the positive classes), and the temporal attention (gamma) of every
snippet with the time range of its frames in the video. ``--json`` prints the same as one
JSON document; ``--report PNG`` draws the middle frame of every snippet with its weight.

Model configuration and classes: from the checkpoint (this project's .npz stores the
options it was trained with, its class names and their polarity; ``model.py``), else from
the flags (release defaults: ResNet-101, 12 x 16 frames, 112 x 112, VE-8); flags given
explicitly always win. A missing or unreadable video or checkpoint gives one line on
stderr and exit status 2.
"""
import argparse
import json
import os
import sys
import tempfile


class PredictError(Exception):
    """Reported as one line on stderr, exit status 2."""


def build_parser():
    from opts import add_model_options

    p = argparse.ArgumentParser(
        prog="predict.py",
        description="Predict the emotion of a video with a VAANet checkpoint (prints the top "
                    "classes, the polarity and the temporal attention per snippet).")
    a = p.add_argument
    a("video", help="the video file (anything ffmpeg reads: .mp4, .avi, .mkv, ...)")
    a("--checkpoint", required=True, help="checkpoint: this project's .npz or a release .pth")
    a("--top", type=int, default=3, help="number of classes to list")
    a("--json", action="store_true", help="print the result as JSON")
    a("--report", default=None, metavar="PNG",
      help="write a picture of the key frame of every snippet with its attention weight")
    add_model_options(p.add_argument_group(
        "model configuration (default: the checkpoint's training options, else the release's)"))
    a("--ffmpeg", default=None, metavar="PATH",
      help="ffmpeg binary (default: $FFMPEG_BINARY, else imageio-ffmpeg's, else PATH)")
    a("--no_cuda", action="store_true", help="run on the CPU even when a GPU is available")
    return p


def parse_args(argv=None):
    """``(args, checkpoint dict)``: the checkpoint's options are the parser's defaults, so
    that the flags given explicitly win. Checks the files first (PredictError)."""
    from core.checkpoint import CheckpointError, read_checkpoint_file
    from model import MODEL_OPTIONS, saved_options

    parser = build_parser()
    first = parser.parse_args(argv)
    check_files(first)
    try:
        ckpt = read_checkpoint_file(first.checkpoint)
    except (CheckpointError, OSError) as e:
        raise PredictError(f"cannot read checkpoint {first.checkpoint}: {e}")
    parser.set_defaults(**saved_options(ckpt.get("meta"), MODEL_OPTIONS))
    return parser.parse_args(argv), ckpt


def check_files(args):
    video = args.video
    if not os.path.exists(video):
        raise PredictError(f"no such file: {video}")
    if not os.path.isfile(video):
        raise PredictError(f"not a file: {video}")
    if not os.access(video, os.R_OK):
        raise PredictError(f"cannot read {video}: permission denied")
    if not os.path.isfile(args.checkpoint):
        raise PredictError(f"checkpoint not found: {args.checkpoint}")
    if args.top < 1:
        raise PredictError("--top must be at least 1")


# --------------------------------------------------------------------------------------
# model and sample

def load_model(ckpt, args):
    """``(model, config, classes)`` for the checkpoint and the options."""
    from core.checkpoint import CheckpointError
    from datasets.catalog import classes_of_record
    from model import model_config, model_from_state_dict

    config = model_config(args)
    try:
        model = model_from_state_dict(ckpt["state_dict"], config)
    except CheckpointError as e:
        raise PredictError(f"checkpoint {args.checkpoint}: {e}")
    return model, config, classes_of_record(ckpt.get("meta"), config["dataset"], config["n_classes"])


def extract(video, workdir, ffmpeg=None):
    """Frames and mp3 of ``video`` under ``workdir``; returns a dict describing them."""
    from datasets.media import MediaError, extract_audio, extract_frames, list_frame_indices, probe

    try:
        info = probe(video, ffmpeg)
        if not info.has_video:
            raise PredictError(f"no video stream in {video}")
        frames_dir = os.path.join(workdir, "frames")
        extract_frames(video, frames_dir, ffmpeg=ffmpeg)
        mp3 = os.path.join(workdir, "audio.mp3")
        had_sound = extract_audio(video, mp3, ffmpeg=ffmpeg, info=info)
    except MediaError as e:
        raise PredictError(f"cannot read {video}: {e}")
    # the real frame count: n_frames would be 0 below 16 frames, the video is still usable
    found = list_frame_indices(frames_dir)
    if not found:
        raise PredictError(f"ffmpeg extracted no frames from {video}")
    return {"frames_dir": frames_dir, "n_frames": found[-1], "mp3": mp3,
            "has_sound": bool(had_sound), "info": info}


def sample_of(extracted, config):
    """``(visual, audio, snippets)``: the evaluation sample of the extracted video."""
    from datasets.sample import SampleRecipe, frame_indices

    recipe = SampleRecipe(config["seq_len"], config["snippet_duration"], config["sample_size"],
                          train=False)
    indices = frame_indices(extracted["n_frames"], config["fps"])
    visual, snippets = recipe.visual(extracted["frames_dir"], indices)
    try:
        audio = recipe.audio_features(extracted["mp3"])
    except ValueError as e:
        raise PredictError(f"no usable audio in the extracted sound track: {e}")
    return visual, audio, snippets


# --------------------------------------------------------------------------------------
# prediction

def run_model(model, visual, audio):
    """``(probabilities [C], logits [C], gamma [S])`` for one sample."""
    import numpy as np
    from core.jittor_setup import jt
    from core.evaluate import softmax

    with jt.no_grad():
        logits, _alpha, _beta, gamma = model(jt.array(visual[None]), jt.array(audio[None]))
        logits = logits.numpy().astype(np.float32)
        gamma = gamma.numpy().astype(np.float32)
    return softmax(logits)[0], logits[0], gamma[0]


def summarize(video, checkpoint, extracted, config, classes, meta, probs, logits, gamma,
              snippets, top):
    from core.checkpoint import trained_epochs
    from core.evaluate import json_safe
    info = extracted["info"]
    vfps = info.fps or 30.0
    order = sorted(range(len(probs)), key=lambda i: (-float(probs[i]), i))
    top = max(1, min(int(top), len(probs)))
    class_names = classes.names
    mask = classes.positive_mask()
    best = order[0]
    total = float(sum(float(g) for g in gamma))
    snips = []
    for i, snip in enumerate(snippets):
        first, last = min(snip), max(snip)
        snips.append({
            "index": i + 1,
            "start_s": round((first - 1) / vfps, 3),
            "end_s": round(last / vfps, 3),
            "frames": [int(x) for x in snip],
            "looped": any(b <= a for a, b in zip(snip, snip[1:])),
            "key_frame": int(snip[len(snip) // 2]),
            "gamma": float(gamma[i]),
            "weight": float(gamma[i]) / total if total > 0 else 0.0,
        })
    pos_prob = float(probs[mask].sum()) if mask is not None else None
    return {
        "video": os.path.abspath(video),
        "duration_s": info.duration,
        "video_fps": info.fps,
        "n_frames": int(extracted["n_frames"]),
        "has_sound": extracted["has_sound"],
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


def load_key_frames(frames_dir, summary, height=120):
    from PIL import Image
    from datasets.media import frame_file
    from datasets.sample import load_frame
    out = []
    for sn in summary["snippets"]:
        img = load_frame(frame_file(frames_dir, sn["key_frame"]))
        w, h = img.size
        out.append(img.resize((max(1, round(w * height / h)), height), Image.BILINEAR))
    return out


# --------------------------------------------------------------------------------------

def predict(args, ckpt):
    from core import entry
    entry.choose_device(args.no_cuda)
    from core.jittor_setup import jt  # noqa: F401  (configures Jittor first)
    model, config, classes = load_model(ckpt, args)
    with tempfile.TemporaryDirectory(prefix="vaanet-predict-") as work:
        ex = extract(args.video, work, args.ffmpeg)
        visual, audio, snippets = sample_of(ex, config)
        probs, logits, gamma = run_model(model, visual, audio)
        summary = summarize(args.video, args.checkpoint, ex, config, classes, ckpt.get("meta") or {},
                            probs, logits, gamma, snippets, args.top)
        if args.report:
            key_frames = load_key_frames(ex["frames_dir"], summary)
    if args.report:
        from core.report import plot_attention
        plot_attention(args.report, summary, key_frames)
        summary["report"] = os.path.abspath(args.report)
    return summary


def main(argv=None):
    try:
        args, ckpt = parse_args(argv)
        summary = predict(args, ckpt)
    except PredictError as e:
        print("predict.py: error: " + " ".join(str(e).split()), file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(format_text(summary))
        if args.report:
            print(f"report: {summary['report']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
