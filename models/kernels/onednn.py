"""A 3D convolution (``onednn_conv3d_op.cc``) compiled on first use against the oneDNN
that Jittor itself uses on the CPU (``~/.cache/jittor/mkl/dnnl_*``).

``onednn_ops()`` returns the compiled module (``onednn_conv3d``), or None when Jittor
runs without oneDNN (then callers use their portable path).
"""
import functools
import glob
import os

from core.jittor_setup import jt


@functools.lru_cache(maxsize=None)
def onednn_ops():
    if jt.compile_extern.mkl_ops is None:
        return None
    import jittor_utils
    homes = sorted(glob.glob(os.path.join(jittor_utils.home(), ".cache", "jittor", "mkl",
                                          "dnnl*")))
    homes = [h for h in homes if os.path.isdir(os.path.join(h, "include"))]
    if not homes:
        return None
    home = homes[-1]
    here = os.path.dirname(os.path.abspath(__file__))
    flags = (f' -I"{os.path.join(home, "include")}" -L"{os.path.join(home, "lib")}"'
             f' -lmkldnn ')
    return jt.compile_custom_ops([os.path.join(here, "onednn_conv3d_op.h"),
                                  os.path.join(here, "onednn_conv3d_op.cc")],
                                 extra_flags=flags)
