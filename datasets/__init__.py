"""The data side of VAANet: what a prepared dataset is and how samples are drawn from it.

- ``datasets.catalog``: the known datasets (classes, polarity, file names) and ``Classes``;
- ``datasets.media``: ffmpeg helpers that turn a video into frames, ``n_frames`` and an mp3;
- ``datasets.sample``: the sample recipe (frame indices, TSN snippets, spatial transform);
- ``datasets.audio``: MFCC features and their on-disk cache;
- ``datasets.ve8``: ``VE8Dataset``, the Jittor Dataset of VE-8, Ekman-6 and alike;
- ``datasets.factory``: the datasets and loaders that the command-line options ask for.

The package itself imports nothing, so that the Jittor-free modules (catalog, media,
sample, audio) stay importable without starting Jittor.
"""
