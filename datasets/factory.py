"""Datasets and loaders configured from the command-line options (``opts.parse_opts``, whose
``audio_cache`` is already None when the cache is off).

    train_set = make_loader(get_training_set(opt), opt, shuffle=True)
    val_set = make_loader(get_validation_set(opt), opt, shuffle=False)
    train_set.classes          # the annotation's class names and polarity

- ``get_training_set(opt)``: the "training" subset, random temporal crops and spatial
  augmentation, items seeded by ``(opt.manual_seed, epoch, index)``.
- ``get_validation_set(opt)``: the "validation" subset (= the test list), deterministic
  (centre temporal crops, the release's ``val`` spatial transform).
- ``make_loader(dataset, opt, shuffle, batch_size=None)``: sets Jittor's loader
  attributes (batch size, shuffle, ``opt.n_threads`` workers, ``opt.dl`` drop_last) and
  returns the dataset, which in Jittor is its own loader. Call ``dataset.set_epoch(e)``
  before iterating epoch ``e`` (and ``dataset.start_pass()`` to have its workers start
  loading that epoch at once).
"""
from datasets.ve8 import VE8Dataset


def _make(opt, subset, train):
    return VE8Dataset(opt.video_path, opt.audio_path, opt.annotation_path, subset,
                      train=train, fps=opt.fps, seq_len=opt.seq_len,
                      snippet_duration=opt.snippet_duration, sample_size=opt.sample_size,
                      audio_cache=opt.audio_cache, seed=opt.manual_seed)


def get_training_set(opt):
    return _make(opt, "training", train=True)


def get_validation_set(opt):
    return _make(opt, "validation", train=False)


def make_loader(dataset, opt, shuffle, batch_size=None, drop_last=None):
    """Configure ``dataset`` as a loader; ``drop_last`` defaults to ``opt.dl`` when shuffling
    (training) and to False otherwise (evaluation sees every video)."""
    if drop_last is None:
        drop_last = bool(getattr(opt, "dl", False)) and shuffle
    return dataset.set_attrs(batch_size=batch_size or opt.batch_size, shuffle=bool(shuffle),
                             num_workers=opt.n_threads, drop_last=drop_last)
