"""What a person sees of the model's attention: predict.py --report's picture, checked by
its content, and test.py --html's error-analysis page, opened in a real headless browser
(Debian's chromium and chromium-driver), on a tiny VAANet at 112 px (a 4 x 4 spatial map)."""
import csv
import json
import shutil

import numpy as np
import pytest

CONFIG = {"dataset": "ve8", "n_classes": 8, "resnet_depth": 10, "seq_len": 2,
          "snippet_duration": 4, "sample_size": 112, "audio_embed_size": 256,
          "audio_n_segments": 16, "fps": 30}
GRID = (1, 4, 4)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A tiny random VAANet whose spatial attention is decided (its scores scaled up), so
    that each snippet's map has one clear peak."""
    from core.jittor_setup import jt
    from core.checkpoint import save_checkpoint
    from model import generate_model

    jt.set_global_seed(7)
    model = generate_model(CONFIG)
    sd = {k: v.numpy() for k, v in model.state_dict().items()}
    sd["sa_net.fc.weight"] = sd["sa_net.fc.weight"] * 8.0
    path = tmp_path_factory.mktemp("views") / "tiny.npz"
    save_checkpoint(path, sd, None, {"epoch": 2, "opts": dict(CONFIG)})
    return path


# ------------------------------------------------------------------ predict.py --report
@pytest.fixture(scope="module")
def reported(ckpt, make_video, tmp_path_factory):
    """predict.py --report on a 2 s clip with sound, as PNG and as SVG; and the same
    video's sample through predict.py's own steps (run_model, summarize), with the
    model's outputs."""
    import predict
    from core.checkpoint import load_weights, read_checkpoint_file
    from core.jittor_setup import jt
    from datasets.video import prepare_sample
    from model import checkpoint_classes, generate_model, model_config

    d = tmp_path_factory.mktemp("report")
    video = make_video(d / "clip.mp4", frames=50, fps=25, size=(160, 120), audio=True)
    png, svg = d / "attention.png", d / "attention.svg"
    for path in (png, svg):
        assert predict.main([str(video), "--checkpoint", str(ckpt), "--json",
                             "--report", str(path)]) == 0
    sample = prepare_sample(str(video), CONFIG)
    model = generate_model(CONFIG)
    load_weights(model, str(ckpt))
    model.eval()
    probs, logits, gamma, rows = predict.run_model(model, sample["visual"], sample["audio"], True)
    with jt.no_grad():
        out = model.outputs(jt.array(sample["visual"][None]), jt.array(sample["audio"][None]))
        out = type(out)(*(x.numpy() for x in out))
    saved = read_checkpoint_file(str(ckpt))
    summary = predict.summarize(str(video), str(ckpt), sample, model_config(CONFIG),
                                checkpoint_classes(saved, "ve8"), saved["meta"], probs, logits,
                                gamma, 3)
    return {"png": png, "svg": svg, "sample": sample, "rows": rows, "out": out,
            "summary": summary}


def test_report_files_by_extension(reported):
    from PIL import Image
    with Image.open(reported["png"]) as img:
        assert img.format == "PNG" and img.width > 1000 and img.height > 800
    text = reported["svg"].read_text(encoding="utf-8")
    assert text.lstrip().startswith("<?xml") and "<svg" in text


def _figure(reported, dark=False):
    """The report's figure of the clip, drawn as predict.py draws it (optionally on black
    frames, so that the heat map alone lights the frames)."""
    from core.attention_plot import attention_figure
    from datasets.audio import FRAME_SECONDS

    sample = dict(reported["sample"])
    if dark:
        sample["visual"] = np.zeros_like(sample["visual"])
    return attention_figure(reported["summary"], sample, reported["rows"], GRID, FRAME_SECONDS)


def test_report_heat_map_peaks_on_the_highest_alpha_cell(reported):
    """On black frames, the brightest pixel of each key frame lies in the cell of the
    4 x 4 map where that snippet's alpha is highest (the drawn pixels, not the data)."""
    fig = _figure(reported, dark=True)
    fig.canvas.draw()
    pixels = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(np.float64)
    height = pixels.shape[0]
    alpha = reported["out"].alpha[:, 0]          # [S, 16]
    for k in range(CONFIG["seq_len"]):
        image = next(a for ax in fig.axes for a in ax.images if a.get_gid() == f"spatial-{k}")
        box = image.axes.get_window_extent()
        x0, x1 = int(np.ceil(box.x0)) + 1, int(np.floor(box.x1)) - 1
        y0, y1 = int(np.ceil(height - box.y1)) + 1, int(np.floor(height - box.y0)) - 1
        lum = pixels[y0:y1, x0:x1].mean(axis=2)
        r, c = np.unravel_index(np.argmax(lum), lum.shape)
        cell = (int(4 * r / lum.shape[0]), int(4 * c / lum.shape[1]))
        assert cell == np.unravel_index(np.argmax(alpha[k]), (4, 4)), k
        assert alpha[k].max() > 1.5 * np.median(alpha[k])  # a clear peak to find


def test_report_bars_are_the_models_attention(reported):
    """The audio attention's 16 bars and the temporal attention's bars are the model's
    values, on one time axis in seconds; the channel strip is beta; the title names the
    predicted class."""
    from datasets.audio import segment_seconds
    fig, summary = _figure(reported), reported["summary"]
    out = reported["out"]
    containers = [c for ax in fig.axes for c in ax.containers]
    temporal = next(c for c in containers if c.get_label() == "temporal attention")
    audio = [c for c in containers if c.get_label() == "audio attention"]
    assert len(audio) == 2  # a 2 s clip: the video's part, and the whole (repeated) input
    seg = segment_seconds(16)
    for bars in audio:
        np.testing.assert_allclose([b.get_height() for b in bars], out.audio_attention[0],
                                   rtol=1e-6)
        np.testing.assert_allclose([b.get_x() for b in bars], np.arange(16) * seg, rtol=1e-6)
    np.testing.assert_allclose([b.get_height() for b in temporal], out.gamma[0], rtol=1e-6)
    np.testing.assert_allclose([b.get_x() for b in temporal],
                               [sn["start_s"] for sn in summary["snippets"]])
    # the temporal attention and the video's part of the sound share one time axis
    assert temporal[0].axes.get_xlim() == audio[0][0].axes.get_xlim() \
        == pytest.approx((0, summary["duration_s"]))
    assert any(ax.get_xlabel() == "time in the video (s)" for ax in fig.axes)
    channel = next(ax for ax in fig.axes if ax.get_gid() == "channel")
    np.testing.assert_allclose(channel.images[0].get_array(), out.beta[:, 0], rtol=1e-6)
    assert summary["prediction"]["class"] in fig._suptitle.get_text()


# ------------------------------------------------------------------ the page's thumbnails
def test_thumbnail_heat_peaks_on_the_highest_cell():
    """The page's thumbnails: on a flat grey frame the brightest pixel lies in the cell
    of the highest weight, wherever it is."""
    from core.attention_plot import heat_overlay
    rng = np.random.default_rng(3)
    frame = np.full((72, 72, 3), 90, np.uint8)
    for peak in range(16):
        cells = (0.6 * rng.random(16)).astype(np.float32)
        cells[peak] = 1.0
        cells = cells.reshape(4, 4)
        lum = heat_overlay(frame, cells, cells.max()).astype(np.float64).mean(axis=2)
        r, c = np.unravel_index(np.argmax(lum), lum.shape)
        assert (r * 4 // 72, c * 4 // 72) == np.unravel_index(np.argmax(cells), (4, 4))


# ------------------------------------------------------------------ test.py --html
@pytest.fixture(scope="module")
def page(ckpt, demo_data, tmp_path_factory):
    import test as test_main
    base = tmp_path_factory.mktemp("page")
    out, html_dir, feats = base / "eval", base / "page", base / "features.npz"
    assert test_main.main(["--resume_path", str(ckpt), "--root_path", str(demo_data),
                           "--out", str(out), "--html", str(html_dir), "--features", str(feats),
                           "--n_threads", "0", "--no_progress"]) == 0
    with open(out / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return {"index": html_dir / "index.html", "rows": rows, "features": np.load(feats),
            "report": json.loads((out / "report.json").read_text())}


def test_page_orders_errors_first_most_confident_on_top(page):
    import re
    text = page["index"].read_text(encoding="utf-8")
    ids = [int(i) for i in re.findall(r'id="card-(\d+)"', text)]
    rows = page["rows"]
    assert sorted(ids) == list(range(len(rows))) == list(range(8))
    names = page["report"]["class_names"]

    def key(i):
        r = rows[i]
        conf = float(r[f"prob_{r['predicted_class']}"])
        wrong = r["true_class"] != r["predicted_class"]
        return (not wrong, -conf if wrong else conf)
    assert [key(i) for i in ids] == sorted(key(i) for i in ids)
    assert any(not key(i)[0] for i in ids)  # the tiny model makes errors to show
    assert len(names) == 8 and all(f"{n}</option>" in text for n in names)


def test_page_audio_bars_are_the_models_attention(page):
    import re
    text = page["index"].read_text(encoding="utf-8")
    att = page["features"]["audio_attention"]
    for card in re.findall(r'<div class="card.*?</div></div>', text, re.S):
        i = int(re.search(r'id="card-(\d+)"', card).group(1))
        audio = re.search(r'<div class="bars audio">(.*?)</div>', card).group(1)
        heights = [float(h) for h in re.findall(r"height:([\d.]+)%", audio)]
        np.testing.assert_allclose(heights, 100 * att[i] / att[i].max(), atol=0.051)


def _browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip("no headless browser: install Debian's chromium and chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options)


def test_page_in_a_browser(page):
    """Opened from disk: no console error, every image loads, a confusion-matrix cell
    shows exactly its videos, and the class filter keeps one class's cards."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    browser = _browser()
    try:
        browser.get(page["index"].resolve().as_uri())
        assert browser.title.startswith("ve8: 8 videos")
        # every image: loaded now, not lazily, then all decoded with a size
        browser.execute_script("document.querySelectorAll('img').forEach("
                               "function (i) { i.loading = 'eager'; });")
        WebDriverWait(browser, 30).until(lambda b: b.execute_script(
            "return Array.from(document.images).every(function (i) { return i.complete; });"))
        sizes = browser.execute_script(
            "return Array.from(document.images).map(function (i) { return i.naturalWidth; });")
        assert len(sizes) == 8 and all(w == 2 * 72 for w in sizes), sizes
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors

        def visible():
            return [(c.get_attribute("data-true"), c.get_attribute("data-pred"))
                    for c in browser.find_elements(By.CSS_SELECTOR, ".card") if c.is_displayed()]

        assert len(visible()) == 8
        cm = page["report"]["confusion_matrix"]
        i, j = next((i, j) for i in range(8) for j in range(8) if cm[i][j] and i != j)
        browser.find_element(By.CSS_SELECTOR, f'#confusion a[href="#true={i}&pred={j}"]').click()
        WebDriverWait(browser, 10).until(lambda b: len(visible()) == cm[i][j])
        assert visible() == [(str(i), str(j))] * cm[i][j]
        assert browser.find_element(By.ID, "count").text == f"{cm[i][j]} of 8 videos"

        browser.find_element(By.ID, "show-all").click()
        WebDriverWait(browser, 10).until(lambda b: len(visible()) == 8)
        some = page["rows"][0]["true_class"]
        k = page["report"]["class_names"].index(some)
        Select(browser.find_element(By.ID, "true-filter")).select_by_value(str(k))
        WebDriverWait(browser, 10).until(lambda b: len(visible()) < 8)
        shown = visible()
        assert shown and all(t == str(k) for t, _ in shown)
        assert len(shown) == sum(r["true_class"] == some for r in page["rows"])
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        browser.quit()
