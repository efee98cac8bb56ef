"""Options, MFCC features + cache, VE8Dataset and the Jittor loader, on tiny real data."""
import json
import os
import shutil
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
from PIL import Image


from opts import parse_opts
from datasets.audio import MFCCCache, mfcc_features
from datasets.catalog import DATASETS
from datasets.ve8 import VE8Dataset, DatasetError, order_permutation
from tests.helpers import REPO, make_frames, make_mp3, snippet_indices

VE8_FACTS = DATASETS["ve8"]
VE8 = list(VE8_FACTS.classes.names)
SEQ, DUR, SIZE = 3, 4, 16


# ---------------------------------------------------------------- data helpers
@pytest.fixture(scope="session")
def mp3_pool(tmp_path_factory):
    d = tmp_path_factory.mktemp("mp3")
    files = []
    for i, (sec, freq, rate) in enumerate([(1.0, 440, 44100), (0.5, 880, 48000), (1.5, 300, 44100)]):
        p = d / f"a{i}.mp3"
        make_mp3(p, sec, freq, rate)
        files.append(str(p))
    return files


# (video_id, class, subset, n_frames, width, height)
VIDEOS = [
    ("v,001-a", "Anger", "training", 30, 48, 36),
    ("v002", "Joy", "training", 5, 48, 36),        # shorter than seq_len * dur: loop-padded
    ("v003", "Trust", "training", 20, 36, 48),     # portrait
    ("v004", "Fear", "training", 25, 48, 36),
    ("v005", "Sadness", "training", 17, 48, 36),
    ("t001", "Surprise", "validation", 22, 48, 36),
    ("t002", "Disgust", "validation", 9, 48, 36),
]


def make_root(root, mp3_pool, videos=VIDEOS, extra_db=None):
    db = {}
    for k, (vid, cls, subset, n, w, h) in enumerate(videos):
        make_frames(os.path.join(root, VE8_FACTS.frames_folder, cls, vid), n, w, h, seed=k)
        dst = os.path.join(root, VE8_FACTS.audio_folder, cls, vid + ".mp3")
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy(mp3_pool[k % len(mp3_pool)], dst)
        db[vid] = {"subset": subset, "annotations": {"label": cls}}
    db.update(extra_db or {})
    with open(os.path.join(root, VE8_FACTS.annotation_file(1)), "w") as f:
        json.dump({"labels": VE8, "database": db}, f)  # a release-made json: no polarity
    return root


@pytest.fixture(scope="module")
def root(tmp_path_factory, mp3_pool):
    return make_root(str(tmp_path_factory.mktemp("ve8")), mp3_pool)


def dataset(root, subset, cls=VE8Dataset, **kw):
    kw.setdefault("seq_len", SEQ)
    kw.setdefault("snippet_duration", DUR)
    kw.setdefault("sample_size", SIZE)
    kw.setdefault("audio_cache", os.path.join(root, "mfcc_cache"))
    return cls(os.path.join(root, VE8_FACTS.frames_folder),
               os.path.join(root, VE8_FACTS.audio_folder),
               os.path.join(root, VE8_FACTS.annotation_file(1)), subset, **kw)


# ---------------------------------------------------------------- options
def test_opts_defaults():
    o = parse_opts([])
    assert o.dataset == "ve8" and o.root_path == "data"
    assert o.video_path == os.path.join("data", "VideoEmotion8--imgs")
    assert o.audio_path == os.path.join("data", "VideoEmotion8--mp3")
    assert o.annotation_path == os.path.join("data", "ve8_01.json")
    assert o.audio_cache == os.path.join("data", "mfcc_cache")
    assert (o.n_classes, o.batch_size, o.n_epochs, o.begin_epoch) == (8, 32, 100, 1)
    assert (o.snippet_duration, o.sample_size, o.seq_len, o.fps) == (16, 112, 12, 30)
    assert (o.audio_embed_size, o.audio_n_segments, o.resnet_depth) == (256, 16, 101)
    assert o.loss_func == "pcce_ve8" and o.lambda_0 == 0.5
    assert o.learning_rate == 2e-4 and o.weight_decay == 0
    assert o.manual_seed == 1 and o.dl is False and o.no_cuda is False
    assert o.result_path == "results" and o.resume_path == "" and o.n_threads >= 1
    assert o.resnet101_pretrained == "" and o.audio_pretrained == ""


def test_opts_ek6_switch_and_overrides(tmp_path):
    o = parse_opts(["--dataset", "ek6", "--root_path", str(tmp_path)])
    assert o.video_path == str(tmp_path / "Ekman6--imgs")
    assert o.audio_path == str(tmp_path / "Ekman6--mp3")
    assert o.annotation_path == str(tmp_path / "ek6_01.json")
    assert o.n_classes == 6
    o = parse_opts(["--dataset", "ek6", "--n_classes", "7", "--video_path", "/abs/frames",
                    "--annotation_path", "my.json", "--drop_last", "--no_cuda",
                    "--batch_size", "4", "--loss_func", "ce", "--audio_cache", ""])
    assert o.n_classes == 7 and o.video_path == "/abs/frames"
    assert o.annotation_path == os.path.join("data", "my.json")
    assert o.dl and o.no_cuda and o.batch_size == 4 and o.loss_func == "ce"
    assert o.audio_cache is None
    assert parse_opts(["--no_audio_cache"]).audio_cache is None
    assert parse_opts(["--dl"]).dl


def test_opts_carry_the_dataset_classes():
    o = parse_opts([])
    assert o.class_names == VE8 and o.positive_classes == ["Anticipation", "Joy", "Surprise", "Trust"]
    o = parse_opts(["--dataset", "ek6"])
    assert o.class_names == ["anger", "disgust", "fear", "joy", "sadness", "surprise"]
    assert o.positive_classes == ["joy", "surprise"]
    # another number of classes than the dataset's: named by index, polarity unknown
    o = parse_opts(["--n_classes", "3"])
    assert o.class_names == ["class_0", "class_1", "class_2"] and o.positive_classes is None


def test_opts_every_flag_has_help():
    from opts import build_parser
    for action in build_parser()._actions:
        assert action.help, action.dest


# ---------------------------------------------------------------- audio
def test_mfcc_equals_librosa(mp3_pool):
    import librosa
    for path in mp3_pool:
        out = mfcc_features(path)
        y, sr = librosa.load(path, sr=44100)
        ref = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=32).T
        ref = np.tile(ref, (4096 // ref.shape[0] + 1, 1))[:4096]
        assert out.shape == (4096, 32) and out.dtype == np.float32
        np.testing.assert_array_equal(out, ref.astype(np.float32))


def numba_cache_files(cache, code):
    """The files numba's cache folder ``cache`` holds after a fresh Python ran ``code``."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True, timeout=300)
    return sorted(p.name for p in cache.rglob("*") if p.is_file())


def test_compile_librosa_compiles_all_the_mfcc_features_need(tmp_path, mp3_pool):
    """After ``compile_librosa`` (``make venv``), the MFCC features of an mp3 compile
    nothing more; control: importing librosa's feature module compiles nothing."""
    assert numba_cache_files(tmp_path / "import", "import librosa.feature") == []
    compiled = numba_cache_files(tmp_path / "made", "from datasets.audio import "
                                 "compile_librosa; compile_librosa()")
    assert compiled
    assert numba_cache_files(tmp_path / "made", "from datasets.audio import mfcc_features; "
                             f"mfcc_features({mp3_pool[1]!r})") == compiled


def test_mfcc_cache_hit_change_and_corruption(tmp_path, mp3_pool):
    audio = tmp_path / "x.mp3"
    shutil.copy(mp3_pool[0], audio)
    cache = MFCCCache(str(tmp_path / "cache"))
    first = cache(str(audio))
    assert cache.misses == 1 and cache.hits == 0
    entries = os.listdir(tmp_path / "cache")
    assert len(entries) == 1 and entries[0].endswith(".npy")  # no temp file left behind
    again = cache(str(audio))
    assert cache.hits == 1
    np.testing.assert_array_equal(again, first)
    assert again.dtype == np.float32
    # a fresh cache object (another process) reads the same entry
    other = MFCCCache(str(tmp_path / "cache"))
    np.testing.assert_array_equal(other(str(audio)), first)
    assert other.hits == 1

    # a changed file is noticed (new size / mtime -> new key)
    shutil.copy(mp3_pool[2], audio)
    st = os.stat(audio)
    os.utime(audio, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    changed = cache(str(audio))
    assert cache.misses == 2
    np.testing.assert_array_equal(changed, mfcc_features(str(audio)))
    assert not np.array_equal(changed, first)

    # a corrupt entry is recomputed (and rewritten)
    entry = cache.entry_path(str(audio))
    with open(entry, "wb") as f:
        f.write(b"\x93NUMPY garbage")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        fixed = cache(str(audio))
    assert any("corrupt" in str(x.message) for x in w)
    np.testing.assert_array_equal(fixed, changed)
    np.testing.assert_array_equal(np.load(entry), changed)
    # an entry of the wrong shape too
    np.save(entry, np.zeros((3, 32), np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.testing.assert_array_equal(cache(str(audio)), changed)

    # disabled cache computes every time
    none = MFCCCache(None)
    np.testing.assert_array_equal(none(str(audio)), changed)


# ---------------------------------------------------------------- dataset
def test_items_shapes_dtypes_targets(root):
    ds = dataset(root, "training")
    assert ds.n_samples == 5 and ds.train
    ids = [e["video_id"] for e in ds.data]
    for i in range(ds.n_samples):
        visual, target, audio, vid = ds[i]
        assert visual.shape == (SEQ, 3, DUR, SIZE, SIZE) and visual.dtype == np.uint8
        assert audio.shape == (4096, 32) and audio.dtype == np.float32
        assert isinstance(target, int) and vid == ids[i]
        assert target == VE8.index(dict((v[0], v[1]) for v in VIDEOS)[vid])
    val = dataset(root, "validation")
    assert val.n_samples == 2 and not val.train
    assert sorted(e["video_id"] for e in val.data) == ["t001", "t002"]
    # frame indices follow range(1, n + 1, 30 // fps)
    ds15 = dataset(root, "validation", fps=15)
    assert ds15.data[0]["frame_indices"] == list(range(1, 23, 2))


def test_classes_come_from_the_annotation(tmp_path, mp3_pool):
    # a release-made json names VE-8's classes without polarity: the table's applies
    r = make_root(str(tmp_path / "release"), mp3_pool, VIDEOS[:1])
    ds = dataset(r, "training")
    assert ds.labels == VE8 and ds.classes.positive == ("Anticipation", "Joy", "Surprise", "Trust")
    # an annotation that states its own classes and polarity is taken at its word
    r = make_root(str(tmp_path / "own"), mp3_pool, VIDEOS[:1])
    ann_path = os.path.join(r, VE8_FACTS.annotation_file(1))
    with open(ann_path) as f:
        ann = json.load(f)
    ann.update(labels=["Anger", "Calm"], positive_classes=["Calm"])
    with open(ann_path, "w") as f:
        json.dump(ann, f)
    ds = dataset(r, "training")
    assert ds.classes.names == ("Anger", "Calm") and ds.classes.positive == ("Calm",)
    assert ds.classes.positive_mask().tolist() == [False, True]
    assert ds.classes.polarity_of(0) == "negative" and ds[0][1] == 0
    ann.update(positive_classes=None)  # polarity unknown
    with open(ann_path, "w") as f:
        json.dump(ann, f)
    ds = dataset(r, "training")
    assert not ds.classes.has_polarity and ds.classes.positive_mask() is None
    ann.update(positive_classes=["Joy"])  # not one of its classes
    with open(ann_path, "w") as f:
        json.dump(ann, f)
    with pytest.raises(DatasetError, match="Joy"):
        dataset(r, "training")


def test_eval_items_identical_across_calls_and_match_transforms(root):
    from transforms.spatial import EvalSpatialTransform
    from transforms.temporal import TSN
    val = dataset(root, "validation")
    a = [val[i] for i in range(val.n_samples)]
    val.set_epoch(5)
    b = [val[i] for i in range(val.n_samples)]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x[0], y[0])
        np.testing.assert_array_equal(x[2], y[2])
    # independent computation of item 0
    e = val.data[0]
    snippets = TSN(SEQ, DUR, center=True)(e["frame_indices"])
    t = EvalSpatialTransform(SIZE)
    ref = np.stack([np.stack([np.array(t(Image.open(os.path.join(e["video_dir"], f"{k:06d}.jpg"))
                                         .convert("RGB"))) for k in s]) for s in snippets])
    np.testing.assert_array_equal(a[0][0], ref.transpose(0, 4, 1, 2, 3))
    np.testing.assert_array_equal(a[0][2], mfcc_features(e["audio"]))


def test_training_items_reproducible_per_seed_and_epoch(root):
    ds = dataset(root, "training", seed=3)
    ds2 = dataset(root, "training", seed=3)
    for i in range(ds.n_samples):
        np.testing.assert_array_equal(ds[i][0], ds2[i][0])
        np.testing.assert_array_equal(ds[i][0], ds[i][0])
    first = [ds[i][0] for i in range(ds.n_samples)]
    ds.set_epoch(1)
    second = [ds[i][0] for i in range(ds.n_samples)]
    assert any(not np.array_equal(x, y) for x, y in zip(first, second))
    ds.set_epoch(0)
    for i in range(ds.n_samples):
        np.testing.assert_array_equal(ds[i][0], first[i])
    other_seed = dataset(root, "training", seed=4)
    assert any(not np.array_equal(other_seed[i][0], first[i]) for i in range(ds.n_samples))


def test_one_spatial_draw_per_video(tmp_path, mp3_pool):
    # every frame identical -> every frame of the sample identical, whatever the draw
    vids = [("same", "Joy", "training", 40, 48, 36)]
    r = make_root(str(tmp_path), mp3_pool, vids)
    make_frames(os.path.join(r, VE8_FACTS.frames_folder, "Joy", "same"), 40, seed=9, same=True)
    ds = dataset(r, "training", audio_cache=None)
    from datasets.ve8 import item_rng
    seen = set()
    for epoch in range(25):
        ds.set_epoch(epoch)
        v = ds[0][0]
        frames = v.transpose(0, 2, 3, 4, 1).reshape(-1, SIZE, SIZE, 3)
        assert (frames == frames[0]).all()
        rng = item_rng(ds.seed, epoch, 0)
        ds.recipe.temporal(ds.data[0]["frame_indices"], rng)
        seen.add(ds.recipe.spatial.draw(rng)["aug"])
    assert len(seen) >= 2


def test_short_video_repeats_decoded_frames(root):
    ds = dataset(root, "training")
    i = [e["video_id"] for e in ds.data].index("v002")  # 5 frames for 3 x 4
    snippets = snippet_indices(ds, i)
    v = ds[i][0]
    flat = [k for s in snippets for k in s]
    frames = v.transpose(0, 2, 1, 3, 4).reshape(len(flat), 3, SIZE, SIZE)
    for a in range(len(flat)):
        for b in range(len(flat)):
            if flat[a] == flat[b]:
                np.testing.assert_array_equal(frames[a], frames[b])


def test_all_problems_reported_in_one_error(tmp_path, mp3_pool):
    r = make_root(str(tmp_path), mp3_pool, VIDEOS[:5], extra_db={
        "ghost": {"subset": "training", "annotations": {"label": "Anger"}},
        "badlabel": {"subset": "training", "annotations": {"label": "Boredom"}},
    })
    imgs = os.path.join(r, VE8_FACTS.frames_folder)
    os.remove(os.path.join(r, VE8_FACTS.audio_folder, "Joy", "v002.mp3"))
    with open(os.path.join(imgs, "Trust", "v003", "n_frames"), "w") as f:
        f.write("many")
    os.remove(os.path.join(imgs, "Fear", "v004", "n_frames"))
    os.remove(os.path.join(imgs, "Sadness", "v005", "000017.jpg"))
    with pytest.raises(DatasetError) as err:
        dataset(r, "training")
    msg = str(err.value)
    assert msg.startswith("7 problem(s)")
    for needle in ["ghost: frame folder missing", "ghost: audio file missing", "badlabel: label 'Boredom'",
                   "v002: audio file missing", "v003: unreadable n_frames",
                   "v004: unreadable n_frames", "v005: frame", "000017.jpg"]:
        assert needle in msg, needle
    assert "v,001-a" not in msg


def test_videos_without_frames_skipped_with_warning(tmp_path, mp3_pool):
    r = make_root(str(tmp_path), mp3_pool, VIDEOS[:3])
    make_frames(os.path.join(r, VE8_FACTS.frames_folder, "Joy", "v002"), 5, n_frames_text=0)
    with pytest.warns(UserWarning, match=r"1 video\(s\).*n_frames <= 0.*v002"):
        ds = dataset(r, "training")
    assert [e["video_id"] for e in ds.data] == ["v,001-a", "v003"]


def test_sampler_order_depends_on_seed_and_epoch(root):
    ds = dataset(root, "training", seed=1, shuffle=True)
    o0 = list(ds.sampler)
    assert o0 == order_permutation(5, 1, 0).tolist() and sorted(o0) == list(range(5))
    ds.set_epoch(1)
    assert list(ds.sampler) == order_permutation(5, 1, 1).tolist()
    orders = {tuple(order_permutation(5, 1, e)) for e in range(10)}
    assert len(orders) > 1
    ds.set_attrs(shuffle=False)
    assert list(ds.sampler) == list(range(5))


def _batches(ds, epoch):
    ds.set_epoch(epoch)
    out = []
    for visual, target, audio, vid in ds:
        out.append((visual.numpy(), target.numpy(), audio.numpy(), list(vid)))
    return out


def _same_batches(a, b):
    """Whether two lists of ``_batches`` hold the same batches, value for value."""
    return len(a) == len(b) and all(
        x[3] == y[3] and all(np.array_equal(x[i], y[i]) for i in range(3)) for x, y in zip(a, b))


def test_loader_workers_match_single_process(root):
    from core.jittor_setup import jt
    single = dataset(root, "training", seed=7, batch_size=2, shuffle=True, num_workers=0)
    multi = dataset(root, "training", seed=7, batch_size=2, shuffle=True, num_workers=2)
    assert len(single) == 3  # Jittor: len() counts batches
    for epoch in (1, 2):
        a, b = _batches(single, epoch), _batches(multi, epoch)
        assert len(a) == 3 and _same_batches(a, b)
        ids = [single.data[i]["video_id"] for i in order_permutation(5, 7, epoch)]
        assert [v for x in a for v in x[3]] == ids
        if epoch == 1:
            first = a
    assert any(not np.array_equal(x[0], y[0]) for x, y in zip(first, a))
    multi.terminate()
    # collation keeps uint8 visual, int32 targets, float32 audio, str ids
    visual, target, audio, vid = next(iter(single))
    assert isinstance(visual, jt.Var) and str(visual.dtype) == "uint8"
    assert visual.shape == [2, SEQ, 3, DUR, SIZE, SIZE]
    assert str(target.dtype) == "int32" and str(audio.dtype) == "float32"
    assert all(isinstance(v, str) for v in vid)


class CountingDataset(VE8Dataset):
    """Appends the index of each item it makes to the file ``log``, from any process."""
    log = None

    def __getitem__(self, index):
        with open(self.log, "a") as f:
            f.write(f"{index}\n")
        return super().__getitem__(index)


def items_loaded(root, tmp_path, one_pass):
    """How many items a 2-worker training set loads over two epochs of a slow consumer
    (0.2 s a batch: the workers finish a pass long before it does), each epoch's pass made
    by ``one_pass(dataset)``."""
    ds = dataset(root, "training", cls=CountingDataset, batch_size=1, shuffle=True,
                 num_workers=2)
    ds.log = str(tmp_path / "loads.txt")
    for epoch in (1, 2):
        ds.set_epoch(epoch)
        for _ in one_pass(ds):
            time.sleep(0.2)
    ds.terminate()
    return len(open(ds.log).read().split())


def test_a_pass_loads_each_item_once(root, tmp_path):
    assert items_loaded(root, tmp_path, iter) == 2 * 5


def test_control_jittor_own_loop_reads_ahead_into_further_passes(root, tmp_path):
    from jittor.dataset import Dataset
    assert items_loaded(root, tmp_path, Dataset.__iter__) > 2 * 5


class WithoutPassCheck(VE8Dataset):
    """A dataset that takes every pass for complete (``_begin_pass``'s half-way check
    removed)."""
    _pass_complete = property(lambda self: True, lambda self, value: None)


def _training_sets(root, cls, batch_size=1):
    """A training set of ``cls`` with two workers, and the same without workers."""
    kw = dict(seed=3, batch_size=batch_size, shuffle=True)
    return (dataset(root, "training", cls=cls, num_workers=2, **kw),
            dataset(root, "training", num_workers=0, **kw))


@pytest.mark.parametrize("cls, leaks", [(VE8Dataset, False), (WithoutPassCheck, True)])
def test_a_pass_left_half_way_does_not_leak_into_the_next(root, cls, leaks):
    """``next(iter(dataset))`` at epoch 1 (more of that pass on its way), then whole passes
    of epoch 2: the batches of a dataset without workers; control: without the half-way
    check, batches of epoch 1 come into epoch 2's pass."""
    ds, single = _training_sets(root, cls)
    ds.set_epoch(1)
    first = _batches(single, 1)[0][3]
    if cls is VE8Dataset:
        assert [next(iter(ds))[3] for _ in range(2)] == [first, first]
    else:
        assert next(iter(ds))[3] == first
    assert _same_batches(_batches(ds, 2), _batches(single, 2)) != leaks
    ds.terminate()


class _LateLock:
    """A lock that worker 0 of ``dataset`` takes ``delay`` seconds late."""

    def __init__(self, lock, dataset, delay=0.5):
        self.lock, self.dataset, self.delay = lock, dataset, delay

    def __enter__(self):
        if getattr(self.dataset, "worker_id", None) == 0:
            time.sleep(self.delay)
        return self.lock.__enter__()

    def __exit__(self, *exc):
        return self.lock.__exit__(*exc)


class LateAnnouncer(VE8Dataset):
    """Worker 0 announces each batch it takes late (Jittor's workers take a batch number
    under one lock and announce it under another, ``idqueue_lock``): worker 1 announces the
    batches it took later first."""

    def _worker_main(self, worker_id, *args):
        self.worker_id = worker_id
        return super()._worker_main(worker_id, *args)

    idqueue_lock = property(lambda self: self._late,
                            lambda self, lock: setattr(self, "_late", _LateLock(lock, self)),
                            lambda self: delattr(self, "_late"))


class InArrivalOrder(LateAnnouncer):
    """Control: the batches in the order the workers announce them."""

    def _in_pass_order(self, arrivals):
        for _ in range(self.batch_len):
            yield next(arrivals)[0]


@pytest.mark.parametrize("cls, in_order", [(LateAnnouncer, True), (InArrivalOrder, False)])
def test_batches_come_in_the_pass_order_whichever_worker_announces_first(root, cls,
                                                                         in_order):
    ds, single = _training_sets(root, cls)
    same = [_same_batches(_batches(ds, e), _batches(single, e)) for e in (1, 2)]
    assert all(same) if in_order else not all(same)
    ds.terminate()


def test_a_pass_started_early_is_taken_over(root, tmp_path):
    """``start_pass()`` (main.py: the next epoch's, before the evaluation), then the
    iteration: the batches of a dataset without workers, each item loaded once (the pass
    was taken over, not begun again); a pass started for an epoch that then changed is
    stopped, and the new epoch's batches come."""
    ds, single = _training_sets(root, CountingDataset, batch_size=2)
    ds.log = str(tmp_path / "loads.txt")
    assert _same_batches(_batches(ds, 1), _batches(single, 1))
    ds.set_epoch(2).start_pass()
    time.sleep(0.5)  # the workers load while this process does something else
    assert _same_batches(_batches(ds, 2), _batches(single, 2))
    assert len(open(ds.log).read().split()) == 2 * 5
    ds.set_epoch(3).start_pass()
    assert _same_batches(_batches(ds, 4), _batches(single, 4))
    ds.terminate()


def test_datasets_from_opts(root):
    from datasets.factory import get_training_set, get_validation_set, make_loader
    opt = parse_opts(["--root_path", root, "--seq_len", str(SEQ), "--snippet_duration", str(DUR),
                      "--sample_size", str(SIZE), "--n_threads", "0", "--batch_size", "4",
                      "--dl", "--manual_seed", "5"])
    train, val = get_training_set(opt), get_validation_set(opt)
    assert train.n_samples == 5 and val.n_samples == 2 and train.train and not val.train
    assert train.seed == 5 and train.audio_features.folder == os.path.join(root, "mfcc_cache")
    make_loader(train, opt, shuffle=True)
    make_loader(val, opt, shuffle=False)
    assert (train.batch_size, train.shuffle, train.drop_last, train.num_workers) == (4, True, True, 0)
    assert (val.shuffle, val.drop_last) == (False, False)
    assert len(train) == 1 and len(val) == 1
    batch = next(iter(val))
    assert batch[0].shape == [2, SEQ, 3, DUR, SIZE, SIZE]
