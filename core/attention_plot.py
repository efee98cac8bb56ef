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
  attention as one bar per audio segment. The model's input is 4096 MFCC rows (47.6 s
  of sound): a longer track is cut (the rest is marked "not heard"), a shorter one is
  repeated to fill it, and a second panel then shows the whole input with its repeats;
- the class probabilities and the polarity.

PNG, SVG or PDF by the file's extension. Matplotlib's Agg canvas is used directly (no
global backend switch, no display).
"""
import functools
import os

import numpy as np

from core.atomic_file import make_folder, write_atomically

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


@functools.lru_cache(maxsize=1)
def _heat_colours():
    """``HEAT_CMAP`` as 256 RGB rows (0..255)."""
    from matplotlib import colormaps
    return (colormaps[HEAT_CMAP](np.linspace(0.0, 1.0, 256))[:, :3] * 255.0).astype(np.float32)


def heat_overlay(frame, cells, vmax):
    """uint8 ``frame`` [H, W, 3] with ``cells`` (``[H', W']``, 0..``vmax``) upsampled and
    blended over it in ``HEAT_CMAP`` colours."""
    h, w = frame.shape[:2]
    level = np.clip(upsample(cells, h, w) / max(float(vmax), 1e-12), 0.0, 1.0)
    heat = _heat_colours()[np.round(level * 255).astype(np.int64)]
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
    mfcc = np.asarray(sample["audio"], np.float32)
    span = len(mfcc) * frame_seconds
    duration = summary["duration_s"] or span
    repeated = duration < span  # a short track, repeated to fill the model's input
    n = len(frames)
    cols = min(n, 6)
    frame_rows = (n + cols - 1) // cols
    panels = [0.9, 0.9, 1.2] + ([1.0] if repeated else []) + [1.0]
    fig = Figure(figsize=(max(12.0, 2.0 * cols + 1.5), 2.1 * frame_rows + 2.4 * len(panels)),
                 dpi=100)
    FigureCanvasAgg(fig)
    gs = fig.add_gridspec(frame_rows + len(panels), cols + 1,
                          width_ratios=[1.0] * cols + [0.08],
                          height_ratios=[1.0] * frame_rows + panels, hspace=0.6, wspace=0.15)
    _draw_frames(fig, gs, frames, cells, summary["snippets"], cols)
    _draw_channels(fig, gs, frame_rows, cols, rows["beta"][0])
    t_ax = _draw_temporal(fig, gs[frame_rows + 1, :cols], summary, duration)
    _draw_sound_panels(fig, gs, frame_rows + 2, cols, t_ax, mfcc, rows["audio_attention"][0],
                       span, duration)
    t_ax.set_xlim(0, duration)
    _draw_classes(fig, gs[frame_rows + len(panels) - 1, :cols], summary)
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


def _draw_temporal(fig, spec, summary, duration):
    ax = fig.add_subplot(spec)
    sn = summary["snippets"]
    starts = [x["start_s"] for x in sn]
    widths = [max(x["end_s"] - x["start_s"], 1e-3) for x in sn]
    ax.bar(starts, [x["gamma"] for x in sn], width=widths, align="edge",
           color="tab:red", alpha=0.75, edgecolor="darkred", label="temporal attention")
    for x, w, k in zip(starts, widths, range(1, len(sn) + 1)):
        ax.text(x + w / 2, 0, f"#{k}", ha="center", va="bottom", fontsize=7)
    ax.set_ylabel("temporal γ")
    ax.set_title(f"temporal attention: one bar per snippet, over the frames it spans "
                 f"(video: {duration:.1f} s)", fontsize=10)
    ax.tick_params(labelbottom=False)
    return ax


def _draw_sound_panels(fig, gs, row, cols, t_ax, mfcc, audio_attention, span, duration):
    """The sound on the video's time axis (shared with ``t_ax``); below it, when the
    track is shorter than the model's input, the whole input with its repeats."""
    g = len(audio_attention)
    sound = fig.add_subplot(gs[row, :cols], sharex=t_ax)
    _draw_sound(sound, mfcc, audio_attention, span)
    sound.set_xlabel("time in the video (s)")
    title = f"sound (MFCC) and the audio attention over its {g} segments of {span / g:.2f} s"
    if duration < span:
        sound.set_title(title + ": the video's part", fontsize=10)
        whole = fig.add_subplot(gs[row + 1, :cols])
        _draw_sound(whole, mfcc, audio_attention, span)
        for k in range(1, int(np.ceil(span / duration))):
            whole.axvline(k * duration, color="white", linestyle="--", linewidth=0.8)
        whole.set_xlim(0, span)
        whole.set_xlabel("time in the model's audio input (s)")
        whole.set_title(f"the whole audio input: the {duration:.1f} s track repeated to "
                        f"{span:.1f} s (dashed: where it starts again)", fontsize=10)
        return
    if duration > span:
        sound.axvspan(span, duration, color="0.85", lw=0)
        sound.text(span, mfcc.shape[1] / 2, f" not heard: the model's input ends at {span:.1f} s",
                   fontsize=8, va="center")
    sound.set_title(title, fontsize=10)


def _draw_sound(ax, mfcc, audio_attention, span):
    """The MFCC input over ``[0, span]`` seconds, the audio attention as outlined bars."""
    ax.imshow(mfcc.T, aspect="auto", origin="lower", cmap="magma",
              extent=(0, span, 0, mfcc.shape[1]), interpolation="nearest")
    ax.set_ylabel("MFCC coefficient")
    g = len(audio_attention)
    seg = span / g
    att = ax.twinx()
    att.bar(np.arange(g) * seg, audio_attention, width=seg, align="edge", fill=False,
            edgecolor="cyan", linewidth=1.5, label="audio attention")
    att.set_ylabel("audio attention", color="tab:cyan")
    att.set_ylim(0, max(float(np.max(audio_attention)) * 1.15, 1e-6))


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
    make_folder(os.path.dirname(os.path.abspath(path)))
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    write_atomically(path, lambda f: fig.savefig(
        f, format=ext if ext in ("svg", "pdf") else "png", bbox_inches="tight"))
    return path
