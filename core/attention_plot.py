"""Pictures of VAANet's four attentions for one video: ``predict.py --report``'s figure,
and the heat-map thumbnails of ``test.py --html``'s page (``core/error_page.py``).

    from core.attention_plot import plot_video_attention, heat_overlay, spatial_maps
    plot_video_attention("clip.png", summary, sample, rows, grid, frame_seconds)
    cells = spatial_maps(rows["alpha"][0], grid)      # [S, H', W'] spatial attention
    rgb = heat_overlay(frame, cells[k], vmax)         # uint8 frame with its heat map

The figure shows, for one video (``summary`` is predict.py's, ``rows`` the video's
``core.features.batch_rows``):

- each snippet's key frame (its middle frame, as the model saw it: the centre crop at
  ``sample_size``) with the spatial attention alpha laid over it as a heat map: the
  backbone's ``H' x W'`` map (4 x 4 at 112 px) upsampled bilinearly to the frame, on one
  colour scale for the whole video (alpha is a softmax times the number of positions,
  so 1 is a uniform weight);
- the channel attention beta: one strip of 512 weights per snippet;
- the temporal attention gamma: one bar per snippet over the frames it spans, in
  seconds of the video;
- the sound the model hears (its MFCC input) on the same time axis, with the audio
  attention as one bar per audio segment; the model's input is ``4096`` MFCC rows
  (47.5 s of sound): a shorter track is repeated to fill it (shaded), a longer one cut;
- the class probabilities and the polarity.

PNG, SVG or PDF by the file's extension. Matplotlib's Agg canvas is used directly (no
global backend switch, no display).
"""
import os

import numpy as np

__all__ = ["spatial_maps", "upsample", "heat_overlay", "attention_figure",
           "plot_video_attention", "HEAT_CMAP"]

HEAT_CMAP = "inferno"
HEAT_OPACITY = 0.55


def spatial_maps(alpha, grid):
    """``alpha`` [S, P] of one video -> [S, H', W']: the spatial attention of each snippet
    on the backbone's map (``grid`` = (T', H', W'), ``models.resnet3d.output_grid``),
    averaged over its T' time steps (1 at the release's sizes)."""
    t, h, w = grid
    alpha = np.asarray(alpha, np.float32)
    return alpha.reshape(alpha.shape[0], t, h, w).mean(axis=1)


def upsample(cells, height, width):
    """A ``[H', W']`` map bilinearly upsampled to ``[height, width]`` (cell centres keep
    their values, so the peak stays in its cell)."""
    from PIL import Image
    img = Image.fromarray(np.ascontiguousarray(cells, np.float32), mode="F")
    return np.asarray(img.resize((width, height), Image.BILINEAR), np.float32)


def heat_overlay(frame, cells, vmax):
    """uint8 ``frame`` [H, W, 3] with ``cells`` (``[H', W']``, 0..``vmax``) upsampled and
    blended over it in ``HEAT_CMAP`` colours."""
    from matplotlib import colormaps
    h, w = frame.shape[:2]
    level = np.clip(upsample(cells, h, w) / max(float(vmax), 1e-12), 0.0, 1.0)
    lut = (colormaps[HEAT_CMAP](np.linspace(0.0, 1.0, 256))[:, :3] * 255.0).astype(np.float32)
    heat = lut[np.round(level * 255).astype(np.int64)]
    out = (1.0 - HEAT_OPACITY) * frame.astype(np.float32) + HEAT_OPACITY * heat
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _key_frames(visual):
    """The middle frame of each snippet of a sample ``visual`` [S, 3, T, H, W]: [S, H, W, 3]."""
    visual = np.asarray(visual)
    return visual[:, :, visual.shape[2] // 2].transpose(0, 2, 3, 1).astype(np.uint8)


def attention_figure(summary, sample, rows, grid, frame_seconds):
    """The figure of the module docstring (a matplotlib Figure, on an Agg canvas).

    ``summary``: predict.py's (``video``, ``duration_s``, ``snippets`` with ``start_s``,
    ``end_s``, ``gamma``; ``probabilities``, ``prediction``, ``polarity``); ``sample``:
    the model's input (``visual`` [S, 3, T, H, W], ``audio`` [L, n_mfcc]); ``rows``: the
    video's ``batch_rows`` (``alpha`` [1, S, P], ``beta`` [1, S, C], ``gamma`` [1, S],
    ``audio_attention`` [1, G]); ``grid``: the backbone's (T', H', W');
    ``frame_seconds``: the time between two MFCC rows."""
    from matplotlib.figure import Figure
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    frames = _key_frames(sample["visual"])
    cells = spatial_maps(rows["alpha"][0], grid)
    n = len(frames)
    cols = min(n, 6)
    frame_rows = (n + cols - 1) // cols
    fig = Figure(figsize=(max(12.0, 2.0 * cols + 1.5), 2.1 * frame_rows + 9.5), dpi=100)
    FigureCanvasAgg(fig)
    gs = fig.add_gridspec(frame_rows + 4, cols + 1, width_ratios=[1.0] * cols + [0.08],
                          height_ratios=[1.0] * frame_rows + [0.9, 0.9, 1.2, 1.0],
                          hspace=0.55, wspace=0.15)
    _draw_frames(fig, gs, frames, cells, summary["snippets"], cols)
    _draw_channels(fig, gs, frame_rows, cols, rows["beta"][0])
    t_ax = _draw_temporal(fig, gs[frame_rows + 1, :cols], summary)
    _draw_sound(fig, gs[frame_rows + 2, :cols], t_ax, sample["audio"],
                rows["audio_attention"][0], frame_seconds, summary["duration_s"])
    _draw_classes(fig, gs[frame_rows + 3, :cols], summary)
    pred, pol = summary["prediction"], summary["polarity"]
    fig.suptitle(f"{os.path.basename(summary['video'])}: predicted {pred['class']} "
                 f"({100 * pred['prob']:.1f} %)" + (f", {pol['label']}" if pol["label"] else ""),
                 fontsize=13)
    return fig


def _draw_frames(fig, gs, frames, cells, snippets, cols):
    vmax = float(cells.max()) if cells.size else 1.0
    image = None
    for k, (frame, sn) in enumerate(zip(frames, snippets)):
        ax = fig.add_subplot(gs[k // cols, k % cols])
        h, w = frame.shape[:2]
        ax.imshow(frame, extent=(0, w, h, 0))
        image = ax.imshow(upsample(cells[k], h, w), cmap=HEAT_CMAP, alpha=HEAT_OPACITY,
                          vmin=0.0, vmax=vmax, extent=(0, w, h, 0), interpolation="nearest")
        image.set_gid(f"spatial-{k}")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"#{k + 1}  {sn['start_s']:.1f}-{sn['end_s']:.1f} s", fontsize=8)
    cax = fig.add_subplot(gs[0, cols])
    fig.colorbar(image, cax=cax).set_label("spatial α\n(1 = uniform)", fontsize=8)


def _draw_channels(fig, gs, frame_rows, cols, beta):
    ax = fig.add_subplot(gs[frame_rows, :cols])
    s, c = beta.shape
    im = ax.imshow(beta, aspect="auto", cmap="viridis", interpolation="nearest",
                   extent=(-0.5, c - 0.5, s + 0.5, 0.5))
    ax.set_gid("channel")
    ax.set_yticks(range(1, s + 1))
    ax.set_yticklabels([f"#{k}" for k in range(1, s + 1)], fontsize=7)
    ax.set_xlabel("channel")
    ax.set_ylabel("snippet")
    ax.set_title("channel attention β per snippet (1 = uniform)", fontsize=10)
    fig.colorbar(im, cax=fig.add_subplot(gs[frame_rows, cols]))


def _draw_temporal(fig, spec, summary):
    ax = fig.add_subplot(spec)
    sn = summary["snippets"]
    starts = [x["start_s"] for x in sn]
    widths = [max(x["end_s"] - x["start_s"], 1e-3) for x in sn]
    ax.bar(starts, [x["gamma"] for x in sn], width=widths, align="edge",
                  color="tab:red", alpha=0.75, edgecolor="darkred", label="temporal attention")
    for x, w, k in zip(starts, widths, range(1, len(sn) + 1)):
        ax.text(x + w / 2, 0, f"#{k}", ha="center", va="bottom", fontsize=7)
    ax.set_ylabel("temporal γ")
    ax.set_title("temporal attention: one bar per snippet, over the frames it spans", fontsize=10)
    ax.tick_params(labelbottom=False)
    return ax


def _draw_sound(fig, spec, t_ax, mfcc, audio_attention, frame_seconds, duration):
    ax = fig.add_subplot(spec, sharex=t_ax)
    mfcc = np.asarray(mfcc, np.float32)
    span = len(mfcc) * frame_seconds
    ax.imshow(mfcc.T, aspect="auto", origin="lower", cmap="magma",
              extent=(0, span, 0, mfcc.shape[1]), interpolation="nearest")
    ax.set_ylabel("MFCC coefficient")
    ax.set_xlabel("time in the video (s)")
    g = len(audio_attention)
    seg = span / g
    att = ax.twinx()
    att.bar(np.arange(g) * seg, audio_attention, width=seg, align="edge", fill=False,
            edgecolor="cyan", linewidth=1.5, label="audio attention")
    att.set_ylabel("audio attention", color="tab:cyan")
    att.set_ylim(0, max(float(np.max(audio_attention)) * 1.15, 1e-6))
    end = max(span, duration or 0.0)
    if duration and duration < span:
        ax.axvspan(duration, span, color="white", alpha=0.35, lw=0)
        ax.text(duration, mfcc.shape[1] * 0.92, " the track repeated (the model's input is "
                f"{span:.1f} s)", fontsize=7, color="white", va="top")
    elif duration and duration > span:
        ax.text(span, mfcc.shape[1] * 0.92, f" not heard: the model's input ends at {span:.1f} s",
                fontsize=7, va="top")
    t_ax.set_xlim(0, end)
    if duration:
        t_ax.axvspan(duration, end, color="0.85", lw=0)
    ax.set_title(f"sound (MFCC) and the audio attention over its {g} segments of "
                 f"{seg:.2f} s", fontsize=10)


def _draw_classes(fig, spec, summary):
    ax = fig.add_subplot(spec)
    names = list(summary["probabilities"])
    probs = [summary["probabilities"][c] for c in names]
    best = summary["prediction"]["index"]
    colors = ["tab:blue" if i == best else "0.65" for i in range(len(names))]
    ax.barh(range(len(names)), probs, color=colors)
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("probability")
    pol = summary["polarity"]
    title = "class probabilities"
    if pol["label"]:
        title += f"; polarity {pol['label']} (P(positive) = {pol['positive_prob']:.2f})"
    ax.set_title(title, fontsize=10)


def plot_video_attention(path, summary, sample, rows, grid, frame_seconds):
    """Write ``attention_figure`` to ``path``: PNG, or SVG/PDF by its extension. Returns
    ``path``."""
    fig = attention_figure(summary, sample, rows, grid, frame_seconds)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    fig.savefig(path, format=ext if ext in ("svg", "pdf") else "png", bbox_inches="tight")
    return path
