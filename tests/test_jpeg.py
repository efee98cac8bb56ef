"""The frame decoder (datasets/jpeg.py) against Pillow's ``Image.open(f).convert('RGB')``,
value for value, and its fall-backs: what it refuses goes to Pillow, and a decoder whose
pixels differ from Pillow's stands down (positive control)."""
import numpy as np
import pytest
from PIL import Image

from datasets import jpeg
from datasets.sample import SampleRecipe, frame_indices
from tests.helpers import natural
from transforms import resample

pytestmark = pytest.mark.skipif(jpeg.decoder() is None,
                                reason="no C compiler or libjpeg headers for the decoder")


def jpeg_file(tmp_path, name, arr, **save):
    path = tmp_path / name
    Image.fromarray(arr).save(path, "JPEG", **save)
    return str(path)


@pytest.mark.parametrize("subsampling", [0, 1, 2])
@pytest.mark.parametrize("w,h", [(320, 240), (57, 31)])
def test_pixels_equal_pillow(tmp_path, w, h, subsampling):
    for seed, quality in enumerate((40, 75, 95)):
        path = jpeg_file(tmp_path, f"{seed}.jpg", natural(w, h, seed), quality=quality,
                         subsampling=subsampling)
        got = jpeg.decode_rgbx(path)
        assert got.shape == (h, w, 4) and got.dtype == np.uint8
        np.testing.assert_array_equal(got[..., :3], np.asarray(Image.open(path).convert("RGB")))


def test_a_larger_frame_grows_the_buffer(tmp_path):
    small = jpeg_file(tmp_path, "s.jpg", natural(40, 30, 0))
    large = jpeg_file(tmp_path, "l.jpg", natural(700, 500, 1))
    for path in (small, large, small):
        np.testing.assert_array_equal(jpeg.decode_rgbx(path)[..., :3],
                                      np.asarray(Image.open(path).convert("RGB")))


def test_refused_files_go_to_pillow(tmp_path):
    grey = jpeg_file(tmp_path, "g.jpg", natural(64, 48, 0)[..., 0])
    whole = open(jpeg_file(tmp_path, "t.jpg", natural(64, 48, 1)), "rb").read()
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(whole[:len(whole) // 2])
    assert jpeg.decode_rgbx(grey) is None
    assert jpeg.decode_rgbx(str(truncated)) is None
    with pytest.raises(FileNotFoundError):
        jpeg.decode_rgbx(str(tmp_path / "missing.jpg"))
    # the recipe then decodes them with Pillow: a grey video's sample is Pillow's pixels
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(1, 5):
        jpeg_file(frames, f"{i:06d}.jpg", natural(64, 48, i)[..., 0])
    recipe = SampleRecipe(2, 2, 16, train=False)
    visual, snippets = recipe.visual(str(frames), frame_indices(4))
    for s, snippet in enumerate(snippets):
        for t, index in enumerate(snippet):
            img = Image.open(frames / f"{index:06d}.jpg").convert("RGB")
            ref = resample.resize_crop_pil(img, recipe.spatial.geometry(*img.size))
            np.testing.assert_array_equal(visual[s, :, t], np.asarray(ref).transpose(2, 0, 1))


def test_positive_control_a_decoder_one_step_off_stands_down(monkeypatch):
    lib = jpeg.decoder()
    assert jpeg.agrees_with_pillow(lambda data: jpeg._decode_bytes(lib, data))

    def off_by_one(data):
        out = jpeg._decode_bytes(lib, data).copy()
        out[0, 0, 0] ^= 1
        return out

    assert not jpeg.agrees_with_pillow(off_by_one)
    monkeypatch.setattr(jpeg, "agrees_with_pillow", lambda decode: False)
    monkeypatch.setattr(jpeg.decoder, "lib", None)
    with pytest.warns(UserWarning, match="differ from Pillow"):
        assert jpeg.decoder() is None
    assert jpeg.decode_rgbx(__file__) is None  # and every frame goes to Pillow
