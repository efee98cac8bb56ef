"""The error-analysis page of an evaluation: ``test.py --html DIR`` writes ``DIR/index.html``
and one key-frame strip per video in ``DIR/frames/``; the page opens from disk, offline (no
server, no network, no framework: plain HTML, inline CSS and a little JavaScript).

    from core.error_page import write_error_page
    write_error_page("eval/page", report, result, grid, segment_seconds)

``report`` is a ``core.report.Report``; ``result`` its ``core.evaluate.EvalResult``,
evaluated with ``features=True`` (the attention maps) and ``key_frames=THUMBNAIL_PX``.

What the page shows, from the top:

- the report: top-1, mean class and polarity accuracy, loss, and per class its videos,
  correct predictions and accuracy;
- the confusion matrix (rows: true class, columns: predicted class); a cell links to
  the cards of its videos (``#true=i&pred=j``);
- two selectors (true class, predicted class) that filter the cards, with the count shown;
- one card per video, misclassified videos first, the most confident errors at the top
  (then the correct ones, the least confident first): the video, true and predicted
  class, the probability of every class, the key frame of every snippet with its spatial
  attention as a heat map (``core.attention_plot.heat_overlay``; one colour scale per
  video, brightest = its highest alpha), under each frame a bar of its temporal
  attention, and a row of bars for the audio attention over the sound's segments.
"""
import html
import json
import os

import numpy as np

from core.atomic_file import make_folder, write_atomically
from core.attention_plot import heat_overlay, spatial_maps

__all__ = ["write_error_page", "card_order", "THUMBNAIL_PX"]

#: Edge of the key-frame thumbnails on the page, in pixels.
THUMBNAIL_PX = 72


def card_order(result):
    """Row indices of ``result`` in the page's order: errors by decreasing probability of
    the (wrong) predicted class, then correct videos by increasing probability."""
    pred = result.predictions
    conf = result.probs[np.arange(result.n), pred] if result.n else np.zeros(0)
    wrong = pred != result.targets
    return sorted(range(result.n), key=lambda i: (not wrong[i], -conf[i] if wrong[i] else conf[i]))


def _pct(x):
    return "n/a" if x is None else f"{100.0 * x:.2f} %"


def _strip(frames, cells):
    """The key frames of one video side by side, each with its heat map: uint8 [h, S*w, 3]."""
    vmax = float(cells.max()) if cells.size else 1.0
    return np.concatenate([heat_overlay(f, c, vmax) for f, c in zip(frames, cells)], axis=1)


def _bars(values, labels, cls):
    top = max(float(np.max(values)), 1e-12) if len(values) else 1.0
    return f'<div class="bars {cls}">' + "".join(
        f'<span style="height:{100.0 * float(v) / top:.1f}%" title="{html.escape(t)}"></span>'
        for v, t in zip(values, labels)) + "</div>"


def _card(i, result, names, strip_src, strip_size, segment_seconds):
    t, p = int(result.targets[i]), int(result.predictions[i])
    probs = result.probs[i]
    feats = result.features
    vid = html.escape(str(result.video_ids[i]))
    rows = "".join(
        f'<tr class="{"pred" if c == p else ""}{" true" if c == t else ""}"><td>{html.escape(n)}</td>'
        f'<td><span class="pbar" style="width:{100.0 * float(probs[c]):.1f}%"></span></td>'
        f"<td>{float(probs[c]):.3f}</td></tr>" for c, n in enumerate(names))
    gamma = feats["gamma"][i]
    audio = feats["audio_attention"][i]
    w, h = strip_size
    return (
        f'<div class="card {"wrong" if t != p else "right"}" id="card-{i}" data-true="{t}" '
        f'data-pred="{p}">'
        f'<h3>{vid}</h3><p class="verdict">true <b>{html.escape(names[t])}</b> &rarr; predicted '
        f'<b class="{"bad" if t != p else "good"}">{html.escape(names[p])}</b> '
        f"({float(probs[p]):.3f})</p>"
        f'<table class="probs">{rows}</table>'
        f'<div class="att" style="width:{w}px"><img src="{strip_src}" width="{w}" height="{h}" '
        f'loading="lazy" '
        f'alt="key frames of {vid} with their spatial attention">'
        + _bars(gamma, [f"snippet {k + 1}: temporal attention {g:.3f}" for k, g in enumerate(gamma)],
                "temporal")
        + '<p class="caption">key frames with spatial attention; temporal attention per snippet</p>'
        + _bars(audio, [f"{k * segment_seconds:.1f}-{(k + 1) * segment_seconds:.1f} s: audio "
                        f"attention {a:.3f}" for k, a in enumerate(audio)], "audio")
        + f'<p class="caption">audio attention over {len(audio)} segments of '
          f"{segment_seconds:.2f} s</p></div></div>")


def _confusion(cm, names):
    head = "".join(f'<th title="{html.escape(n)}">{html.escape(n[:8])}</th>' for n in names)
    body = []
    for i, n in enumerate(names):
        cells = []
        for j, v in enumerate(cm[i]):
            cls = "diag" if i == j else ("off" if v else "")
            text = f'<a href="#true={i}&amp;pred={j}">{int(v)}</a>' if v else "0"
            cells.append(f'<td class="{cls}">{text}</td>')
        body.append(f"<tr><th>{html.escape(n)}</th>{''.join(cells)}</tr>")
    return (f'<table class="cm" id="confusion"><tr><th>true \\ predicted</th>{head}</tr>'
            + "".join(body) + "</table>")


def _summary(metrics):
    m = metrics
    rows = [("videos", m["n_videos"]),
            ("top-1 accuracy", f"{_pct(m['accuracy'])} ({m['n_correct']}/{m['n_videos']})"),
            ("mean class accuracy", _pct(m["mean_class_accuracy"])),
            ("polarity accuracy", _pct(m["polarity_accuracy"])),
            ("loss", "n/a" if m["loss"] is None else f"{m['loss']:.4f}")]
    per_class = "".join(
        f"<tr><td>{html.escape(c['class'])}</td><td>{c['n']}</td><td>{c['correct']}</td>"
        f"<td>{_pct(c['accuracy'])}</td></tr>" for c in m["per_class"])
    return ('<table class="summary">' + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
            + '</table><table class="perclass"><tr><th>class</th><th>videos</th><th>correct</th>'
            f"<th>accuracy</th></tr>{per_class}</table>")


def write_error_page(folder, report, result, grid, segment_seconds):
    """Write the page (see the module docstring) into ``folder``; returns the path of its
    ``index.html``. ``grid``: the backbone's output map (T', H', W'), to place alpha;
    ``segment_seconds``: the length of one audio segment."""
    from PIL import Image

    if result.features is None or result.key_frames is None:
        raise ValueError("the error page needs an evaluation with features and key frames")
    names = report.class_names
    frames_dir = os.path.join(folder, "frames")
    make_folder(frames_dir)
    cards = []
    for i in card_order(result):
        strip = _strip(result.key_frames[i], spatial_maps(result.features["alpha"][i], grid))
        src = f"frames/{i}.jpg"
        write_atomically(os.path.join(folder, src),
                         lambda f: Image.fromarray(strip).save(f, format="JPEG", quality=85))
        cards.append(_card(i, result, names, src, (strip.shape[1], strip.shape[0]),
                           segment_seconds))
    options = "".join(f'<option value="{i}">{html.escape(n)}</option>' for i, n in enumerate(names))
    title = (f"{html.escape(report.dataset)}: {result.n} videos, top-1 "
             f"{_pct(report.metrics['accuracy'])}")
    info = html.escape(json.dumps({k: v for k, v in report.info.items() if k != "config"}))
    page = PAGE.format(title=title, info=info, summary=_summary(report.metrics),
                       confusion=_confusion(report.confusion, names), options=options,
                       n_errors=int((result.predictions != result.targets).sum()),
                       cards="\n".join(cards))
    return write_atomically(os.path.join(folder, "index.html"),
                            lambda f: f.write(page.encode("utf-8")))


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 1em 2em; color: #222; }}
h1 {{ font-size: 1.4em; }} h3 {{ margin: 0 0 .3em; font-size: 1em; word-break: break-all; }}
.top {{ display: flex; gap: 3em; flex-wrap: wrap; align-items: flex-start; }}
table {{ border-collapse: collapse; }} th, td {{ padding: 2px 6px; text-align: left; }}
.summary th, .perclass th {{ background: #eee; }}
.cm td {{ text-align: center; min-width: 2.2em; border: 1px solid #ccc; }}
.cm td.diag {{ background: #d8f0d8; }} .cm td.off {{ background: #f8d8d8; }}
.cm th {{ font-size: .85em; }}
#filters {{ margin: 1em 0; padding: .5em; background: #f4f4f4; }}
.card {{ border: 1px solid #ccc; border-left: 6px solid #4a4; padding: .6em; margin: .6em 0;
        display: grid; grid-template-columns: 17em auto; gap: 0 1.5em; align-items: start;
        overflow-x: auto; }}
.card.wrong {{ border-left-color: #c33; }} .card[hidden] {{ display: none; }}
.card h3, .card .verdict, .probs {{ grid-column: 1 / 2; }}
.verdict .bad {{ color: #c33; }} .verdict .good {{ color: #282; }}
.probs {{ font-size: .8em; }}
.probs td {{ padding: 0 3px; }} .probs tr.true td:first-child {{ font-weight: bold; }}
.probs tr.pred td {{ color: #05a; }}
.pbar {{ display: inline-block; height: .7em; background: #58c; min-width: 1px; }}
.probs td:nth-child(2) {{ width: 6em; }}
.att {{ grid-column: 2 / 3; grid-row: 1 / 4; }}
.att img {{ display: block; }}
.bars {{ display: flex; align-items: flex-end; height: 28px; background: #f6f6f6; }}
.bars span {{ flex: 1; background: #d44; margin: 0 1px; min-height: 1px; }}
.bars.audio span {{ background: #29a; }}
.caption {{ font-size: .75em; color: #666; margin: .1em 0 .4em; }}
</style></head>
<body>
<h1>{title}</h1>
<p class="caption" id="info">{info}</p>
<div class="top"><div><h2>Report</h2>{summary}</div>
<div><h2>Confusion matrix</h2><p class="caption">rows: true class, columns: predicted;
a count leads to its videos</p>{confusion}</div></div>
<div id="filters">true class <select id="true-filter"><option value="">all</option>{options}</select>
predicted class <select id="pred-filter"><option value="">all</option>{options}</select>
<button id="show-all">show all</button> <span id="count"></span>
<span class="caption">{n_errors} misclassified videos first, the most confident at the top</span></div>
<div id="cards">
{cards}
</div>
<script>
(function () {{
  var cards = Array.prototype.slice.call(document.querySelectorAll(".card"));
  var byTrue = document.getElementById("true-filter"), byPred = document.getElementById("pred-filter");
  function apply() {{
    var t = byTrue.value, p = byPred.value, shown = 0;
    cards.forEach(function (c) {{
      var show = (t === "" || c.dataset.true === t) && (p === "" || c.dataset.pred === p);
      c.hidden = !show;
      if (show) shown += 1;
    }});
    document.getElementById("count").textContent = shown + " of " + cards.length + " videos";
  }}
  function fromHash() {{
    var want = {{}};
    location.hash.replace(/^#/, "").split("&").forEach(function (kv) {{
      var i = kv.indexOf("=");
      if (i > 0) want[kv.slice(0, i)] = kv.slice(i + 1);
    }});
    byTrue.value = want["true"] || "";
    byPred.value = want["pred"] || "";
    apply();
    if (location.hash) document.getElementById("filters").scrollIntoView();
  }}
  function toHash() {{
    var parts = [];
    if (byTrue.value !== "") parts.push("true=" + byTrue.value);
    if (byPred.value !== "") parts.push("pred=" + byPred.value);
    location.hash = parts.join("&");
    apply();
  }}
  byTrue.addEventListener("change", toHash);
  byPred.addEventListener("change", toHash);
  document.getElementById("show-all").addEventListener("click", function () {{
    byTrue.value = ""; byPred.value = ""; toHash();
  }});
  window.addEventListener("hashchange", fromHash);
  fromHash();
}})();
</script>
</body></html>
"""
