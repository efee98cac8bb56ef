"""Dataset preparation tools: raw videos -> frames, mp3 files, ``n_frames`` and the split json.

Scripts (run from the repository root, e.g. ``python tools/prepare_dataset.py --help``):

- ``tools/prepare_dataset.py``   all steps in one command (frames, n_frames, mp3, json);
- ``tools/video2jpg.py``         frames of every video (``scale=-1:240``, ``%06d.jpg``);
- ``tools/video2mp3.py``         one mp3 per video (silent mp3 for a video without sound);
- ``tools/n_frames.py``          the ``n_frames`` file of every frame folder;
- ``tools/ve8_json.py``          the annotation json from the split lists;
- ``tools/make_demo_dataset.py`` a small synthetic raw dataset in the VE-8 layout.

``tools.jobs`` holds what these command lines share (parallel jobs over raw videos, their
options and summaries); the ffmpeg work itself is the library module ``datasets.media``,
which ``predict.py`` uses too. Nothing here imports Jittor, and nothing outside ``tools/``
imports ``tools``.
"""
