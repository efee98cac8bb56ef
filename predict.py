"""Predict the emotion of one video with a trained VAANet checkpoint.

Usage (from the repository root)::

    python predict.py clip.mp4 --checkpoint results/demo/save_10.npz
    python predict.py clip.mp4 --checkpoint results/demo/save_10.npz --top 3 --json
    python predict.py clip.mp4 --checkpoint results/demo/save_10.npz --report clip_attention.png
    python predict.py clip.mp4 --checkpoint vaanet_ve8.pth            # release file, release config

The video's frames and sound are extracted with ffmpeg (``tools/media.py``, the same
commands as the dataset preparation) into a temporary folder that is removed afterwards.
The sample is built exactly as the evaluation set builds one: frame indices
``range(1, n_frames + 1, 30 // fps)`` over the frames actually extracted (also for a video
shorter than 16 frames, which the dataset tools would leave out), centre TSN snippets
(loop-padded when the video is too short), the ``val`` spatial transform, and the MFCC
features of the extracted mp3 (a video without sound gets a silent mp3, as in the
dataset tools).

Output: the top classes with their probabilities, the polarity (of the top class, and the
probability mass of the positive classes), and the temporal attention (gamma) of every
snippet with the time range of its frames in the video. ``--json`` prints the same as one
JSON document; ``--report PNG`` draws the middle frame of every snippet with its weight.

Model configuration: from the checkpoint's ``meta["opts"]`` (this project's .npz), else
from the flags (release defaults: ResNet-101, 12 x 16 frames, 112 x 112, VE-8); flags
given explicitly always win. A missing or unreadable video or checkpoint gives one line on
stderr and exit status 2.
"""
import argparse
import json
import os
import sys
import tempfile
import warnings

# librosa (imported after Jittor) makes NumPy warn about subnormals: harmless noise.
warnings.filterwarnings("ignore", message="The value of the smallest subnormal")

CONFIG_FLAGS = ("dataset", "n_classes", "resnet_depth", "seq_len", "snippet_duration",
                "sample_size", "audio_embed_size", "audio_n_segments", "fps")


class PredictError(Exception):
    """Reported as one line on stderr, exit status 2."""


def build_parser():
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
    g = p.add_argument_group("model configuration (default: the checkpoint's training options, "
                             "else the release's)")
    g.add_argument("--dataset", choices=["ve8", "ek6"], default=None,
                   help="class list and polarity (default ve8)")
    g.add_argument("--n_classes", type=int, default=None, help="number of classes")
    g.add_argument("--resnet_depth", type=int, default=None, help="3D ResNet depth (default 101)")
    g.add_argument("--seq_len", type=int, default=None, help="snippets per video (default 12)")
    g.add_argument("--snippet_duration", type=int, default=None, help="frames per snippet (default 16)")
    g.add_argument("--sample_size", type=int, default=None, help="frame size (default 112)")
    g.add_argument("--audio_embed_size", type=int, default=None, help="audio embedding (default 256)")
    g.add_argument("--audio_n_segments", type=int, default=None, help="audio segments (default 16)")
    g.add_argument("--fps", type=int, default=None,
                   help="sampling rate option of training: every 30//fps-th frame (default 30)")
    a("--ffmpeg", default=None, metavar="PATH",
      help="ffmpeg binary (default: $FFMPEG_BINARY, else imageio-ffmpeg's, else PATH)")
    a("--no_cuda", action="store_true", help="run on the CPU even when a GPU is available")
    return p


# --------------------------------------------------------------------------------------
# model

def load_model(checkpoint, args):
    """``(model, config, class_names, meta)`` for ``checkpoint`` and the explicit flags."""
    from core.checkpoint import CheckpointError, load_weights, read_checkpoint_file
    from core.evaluate import (RELEASE_CONFIG, build_model, checkpoint_opts, class_names_for,
                               describe_config, merge_config)

    if not os.path.isfile(checkpoint):
        raise PredictError(f"checkpoint not found: {checkpoint}")
    try:
        ckpt = read_checkpoint_file(checkpoint)
    except (CheckpointError, OSError) as e:
        raise PredictError(f"cannot read checkpoint {checkpoint}: {e}")
    meta = ckpt.get("meta") or {}
    explicit = {k: getattr(args, k) for k in CONFIG_FLAGS if getattr(args, k) is not None}
    config = merge_config(RELEASE_CONFIG, checkpoint_opts(meta), explicit)
    model = build_model(config)
    try:
        load_weights(model, ckpt["state_dict"])
    except CheckpointError as e:
        msg = str(e)
        raise PredictError(f"checkpoint {checkpoint} does not fit the model "
                           f"({describe_config(config)}); pass the flags it was trained with: "
                           f"{msg[:300]}{' ...' if len(msg) > 300 else ''}")
    return model.eval(), config, class_names_for(config, meta), meta


# --------------------------------------------------------------------------------------
# sample (the evaluation set's recipe: datasets/ve8.py VE8Dataset with train=False)

def frame_indices(n_frames, fps=30):
    """``range(1, n_frames + 1, 30 // fps)`` as the dataset builds it."""
    return list(range(1, n_frames + 1, max(1, 30 // fps)))


def build_visual(frames_dir, indices, config):
    """``(visual uint8 [S, 3, T, H, W], snippets)``: centre TSN + the ``val`` transform."""
    import numpy as np
    from datasets.ve8 import frame_file, load_frame
    from transforms.spatial import EvalSpatialTransform
    from transforms.temporal import TSN

    s, t, size = config["seq_len"], config["snippet_duration"], config["sample_size"]
    snippets = TSN(s, t, center=True)(indices)
    spatial = EvalSpatialTransform(size)
    out = np.empty((s, t, size, size, 3), dtype=np.uint8)
    decoded = {}
    for i, snippet in enumerate(snippets):
        for j, idx in enumerate(snippet):
            if idx not in decoded:
                decoded[idx] = spatial.apply(load_frame(frame_file(frames_dir, idx)))
            out[i, j] = decoded[idx]
    return np.ascontiguousarray(out.transpose(0, 4, 1, 2, 3)), snippets


def extract(video, workdir, ffmpeg=None):
    """Frames and mp3 of ``video`` under ``workdir``; returns a dict describing them."""
    from tools.media import MediaError, extract_audio, extract_frames, list_frame_indices, probe

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


def audio_features(mp3):
    from datasets.audio import mfcc_features
    try:
        return mfcc_features(mp3)
    except ValueError as e:
        raise PredictError(f"no usable audio in the extracted sound track: {e}")


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


def polarity_of(config, class_names):
    """Boolean positive-class mask, or None when the dataset has no polarity table."""
    import numpy as np
    from core.evaluate import DEFAULT_CLASS_NAMES
    from core.loss import POSITIVE_CLASSES

    positive = POSITIVE_CLASSES.get(config["dataset"])
    if positive is None or len(class_names) != len(DEFAULT_CLASS_NAMES.get(config["dataset"], ())):
        return None
    mask = np.zeros(len(class_names), dtype=bool)
    mask[list(positive)] = True
    return mask


def summarize(video, checkpoint, extracted, config, class_names, meta, probs, logits, gamma,
              snippets, top):
    from core.evaluate import json_safe
    info = extracted["info"]
    vfps = info.fps or 30.0
    order = sorted(range(len(probs)), key=lambda i: (-float(probs[i]), i))
    top = max(1, min(int(top), len(probs)))
    mask = polarity_of(config, class_names)
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
        "checkpoint_epoch": json_safe(meta.get("epoch")),
        "config": {k: json_safe(v) for k, v in config.items()},
        "prediction": {"class": class_names[best], "index": int(best), "prob": float(probs[best])},
        "top": [{"class": class_names[i], "index": int(i), "prob": float(probs[i])}
                for i in order[:top]],
        "probabilities": {class_names[i]: float(p) for i, p in enumerate(probs)},
        "logits": [float(x) for x in logits],
        "polarity": {
            "label": None if mask is None else ("positive" if mask[best] else "negative"),
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
    from datasets.ve8 import frame_file, load_frame
    out = []
    for sn in summary["snippets"]:
        img = load_frame(frame_file(frames_dir, sn["key_frame"]))
        w, h = img.size
        out.append(img.resize((max(1, round(w * height / h)), height), Image.BILINEAR))
    return out


def draw_report(path, summary, key_frames):
    """Key frame of every snippet with its attention weight, and a bar chart of gamma."""
    from matplotlib.figure import Figure
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    n = len(key_frames)
    cols = min(n, 6)
    rows = (n + cols - 1) // cols
    fig = Figure(figsize=(2.4 * cols + 0.4, 2.2 * rows + 2.4), dpi=100)
    FigureCanvasAgg(fig)
    gs = fig.add_gridspec(rows + 1, cols, height_ratios=[1.0] * rows + [0.9])
    wmax = max([sn["weight"] for sn in summary["snippets"]] + [1e-12])
    for k, (img, sn) in enumerate(zip(key_frames, summary["snippets"])):
        ax = fig.add_subplot(gs[k // cols, k % cols])
        ax.imshow(img)
        ax.set_xticks([])
        ax.set_yticks([])
        strength = sn["weight"] / wmax
        for spine in ax.spines.values():
            spine.set_edgecolor((0.85, 0.1, 0.1, 0.25 + 0.75 * strength))
            spine.set_linewidth(1 + 4 * strength)
        ax.set_title(f"#{sn['index']} {sn['start_s']:.1f}-{sn['end_s']:.1f} s\n"
                     f"frame {sn['key_frame']}  w={sn['weight']:.2f}", fontsize=8)
    ax = fig.add_subplot(gs[rows, :])
    idx = [sn["index"] for sn in summary["snippets"]]
    ax.bar(idx, [sn["weight"] for sn in summary["snippets"]], color="tab:red", alpha=0.7)
    ax.set_xticks(idx)
    ax.set_xlabel("snippet")
    ax.set_ylabel("attention weight")
    top = ", ".join(f"{t['class']} {t['prob']:.2f}" for t in summary["top"])
    pol = summary["polarity"]["label"]
    fig.suptitle(f"{os.path.basename(summary['video'])}: {top}"
                 + (f"  ({pol})" if pol else ""), fontsize=10)
    fig.tight_layout()
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fig.canvas.print_png(path)
    return path


# --------------------------------------------------------------------------------------

def predict(args):
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
    from core.jittor_setup import jt  # noqa: F401  (configures Jittor first)
    model, config, class_names, meta = load_model(args.checkpoint, args)
    with tempfile.TemporaryDirectory(prefix="vaanet-predict-") as work:
        ex = extract(video, work, args.ffmpeg)
        indices = frame_indices(ex["n_frames"], config["fps"])
        visual, snippets = build_visual(ex["frames_dir"], indices, config)
        audio = audio_features(ex["mp3"])
        probs, logits, gamma = run_model(model, visual, audio)
        summary = summarize(video, args.checkpoint, ex, config, class_names, meta, probs,
                            logits, gamma, snippets, args.top)
        if args.report:
            key_frames = load_key_frames(ex["frames_dir"], summary)
    if args.report:
        draw_report(args.report, summary, key_frames)
        summary["report"] = os.path.abspath(args.report)
    return summary


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        summary = predict(args)
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
