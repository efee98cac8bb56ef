"""JPEG frames decoded straight into RGBX arrays by Pillow's own libjpeg: Pillow's values
without Pillow's per-file Python work.

    from datasets import jpeg
    frame = jpeg.decode_rgbx(path)   # uint8 [H, W, 4] (R G B X), or None: use Pillow

Opening a 320x240 frame with ``Image.open(f).convert('RGB')`` costs as much in Pillow's
Python layers (file sniffing, marker parsing, tile set-up) as in the decoding itself.
``jpeg.c`` calls libjpeg directly, with the settings Pillow decodes a full-size RGB JPEG
with (libjpeg's defaults: accurate integer IDCT, fancy upsampling), into the 4-byte pixel
layout that ``transforms.resample``'s kernel reads, so nothing is converted or copied on
the way. It is linked with the very libjpeg that Pillow loads (the one its wheel bundles,
else the system's ``-ljpeg``), and before its first frame in a process it decodes JPEGs
of random pixels at every chroma subsampling both ways (:func:`agrees_with_pillow`): any
difference, and it stands down with a warning. It refuses what it was not made for
(greyscale, CMYK, 12-bit, any libjpeg warning such as truncated data): ``decode_rgbx``
returns None and the caller uses Pillow, whose error messages then name the problem.

The array returned is a view of a buffer kept per thread and overwritten by the next call
in that thread: use it (or copy it) before decoding another frame.
"""
import ctypes
import glob
import io
import os
import threading

import numpy as np
import PIL
from PIL import Image

from core.cbuild import Library, build

_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "jpeg.c")


def pillow_libjpeg():
    """Path of the libjpeg bundled with this Pillow's wheel, or None (Pillow then uses the
    system's)."""
    libs = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(PIL.__file__))),
                        "pillow.libs")
    found = sorted(glob.glob(os.path.join(libs, "libjpeg-*.so*")))
    return found[0] if found else None


def _link_args():
    bundled = pillow_libjpeg()
    if bundled:
        return [bundled, "-Wl,-rpath," + os.path.dirname(bundled)]
    return ["-ljpeg"]


def agrees_with_pillow(decode):
    """Whether ``decode(bytes)`` (-> RGBX array or None) gives Pillow's pixels on JPEGs of
    random pixels (odd sizes; 4:2:0, 4:2:2 and 4:4:4 chroma; two qualities)."""
    rng = np.random.default_rng(0)
    for k, (w, h, subsampling, quality) in enumerate(
            [(37, 23, 2, 75), (64, 48, 1, 90), (33, 17, 0, 60), (320, 240, 2, 95)]):
        noise = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")
        f = io.BytesIO()
        noise.save(f, "JPEG", quality=quality, subsampling=subsampling)
        data = f.getvalue()
        ref = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        got = decode(data)
        if got is None or got.shape != (h, w, 4) or not np.array_equal(got[..., :3], ref):
            return False
    return True


_scratch = threading.local()


def _decode_bytes(lib, data):
    buf = getattr(_scratch, "buf", None)
    if buf is None:
        buf = _scratch.buf = np.empty(320 * 240 * 4, np.uint8)
    w, h = ctypes.c_int(), ctypes.c_int()
    status = lib.jpeg_rgbx(data, len(data), buf.ctypes.data, buf.size, ctypes.byref(w),
                           ctypes.byref(h))
    if status == 1:  # a larger frame than any before in this thread
        buf = _scratch.buf = np.empty(4 * w.value * h.value, np.uint8)
        status = lib.jpeg_rgbx(data, len(data), buf.ctypes.data, buf.size, ctypes.byref(w),
                               ctypes.byref(h))
    if status != 0:
        return None
    return buf[:4 * w.value * h.value].reshape(h.value, w.value, 4)


def _load():
    lib = ctypes.CDLL(build(_SOURCE, link=_link_args()))
    lib.jpeg_rgbx.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_size_t,
                              ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int)]
    lib.jpeg_rgbx.restype = ctypes.c_int
    if not agrees_with_pillow(lambda data: _decode_bytes(lib, data)):
        raise RuntimeError(f"its pixels differ from Pillow {Image.__version__}'s")
    return lib


#: The ctypes decoder, built, loaded and checked on first call; None if unavailable (one
#: warning).
decoder = Library(_load, "the JPEG decoder", "frames are decoded by Pillow")


def decode_rgbx(path):
    """The JPEG file ``path`` as uint8 ``[H, W, 4]`` RGBX (a view of this thread's buffer,
    valid until the next call), or None where Pillow must decode it (see above)."""
    lib = decoder()
    if lib is None:
        return None
    with open(path, "rb") as f:
        data = f.read()
    return _decode_bytes(lib, data)
