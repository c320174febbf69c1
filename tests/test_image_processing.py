"""tfcore.image.ImageProcessor against transformers' image processors (the PIL backend that
AutoImageProcessor uses without torchvision) on random images: same pixel_values."""

from __future__ import annotations

import json

import numpy as np
import PIL.Image
import pytest
import transformers

import tfcore
from tfcore.image import ImageProcessor


def hf_processor(name, **kwargs):
    """transformers' PIL-backend processor class for a family (named ...Pil in transformers 5,
    the plain name before)."""
    return getattr(transformers, name + "Pil", None) or getattr(transformers, name)


# (HF class, config overrides): the families' real defaults, and odd sizes / filters
PROCESSORS = [
    ("CLIPImageProcessor", {}),  # shortest edge 224, bicubic, crop 224, CLIP mean/std
    ("CLIPImageProcessor", {"size": {"shortest_edge": 37}, "crop_size": {"height": 31, "width": 41}}),
    ("ViTImageProcessor", {}),  # 224x224 bilinear, mean/std 0.5
    ("ViTImageProcessor", {"size": {"height": 29, "width": 53}, "resample": 1}),  # lanczos
    ("SiglipImageProcessor", {}),  # 224x224 bicubic
    ("BeitImageProcessor", {"size": {"height": 33, "width": 33}, "crop_size": {"height": 21, "width": 25}}),
    ("ViTImageProcessor", {"resample": 0, "size": {"height": 17, "width": 9}}),  # nearest
    ("ViTImageProcessor", {"resample": 4, "size": {"height": 40, "width": 40}}),  # box
    ("ViTImageProcessor", {"resample": 5, "size": {"height": 23, "width": 61}}),  # hamming
    ("CLIPImageProcessor", {"do_resize": False, "crop_size": {"height": 300, "width": 200}}),  # crop pads
    ("CLIPImageProcessor", {"do_normalize": False}),
    # ConvNeXt's processor, which CvT checkpoints use: shortest edge to int(size / crop_pct),
    # then the central size x size square; from 384 on a warp to size x size
    ("ConvNextImageProcessor", {"size": {"shortest_edge": 224}, "crop_pct": 0.875}),  # cvt-13's
    ("ConvNextImageProcessor", {"size": {"shortest_edge": 37}, "crop_pct": 0.9, "resample": 2}),
    ("ConvNextImageProcessor", {"size": {"shortest_edge": 384}}),
]


def save_config(tmp_path, name, overrides):
    cls = hf_processor(name)
    proc = cls(**overrides)
    d = tmp_path / f"{name}-{len(list(tmp_path.iterdir()))}"
    proc.save_pretrained(d)
    return cls.from_pretrained(d), ImageProcessor.from_pretrained(d), d


def random_images(rng):
    """uint8 images of odd sizes and aspect ratios, as PIL images, HWC and CHW arrays."""
    shapes = [(97, 131), (250, 61), (13, 7), (224, 224), (1, 5), (480, 641)]
    ims = [rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8) for h, w in shapes]
    return ims


@pytest.mark.parametrize(
    "name,overrides", PROCESSORS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(PROCESSORS)]
)
def test_matches_hf_on_random_images(tmp_path, rng, name, overrides):
    hf, ours, _ = save_config(tmp_path, name, overrides)
    for i, im in enumerate(random_images(rng)):
        want = hf(PIL.Image.fromarray(im), return_tensors="np")["pixel_values"]
        for given in (PIL.Image.fromarray(im), im, np.ascontiguousarray(np.moveaxis(im, -1, 0))):
            got = ours(given)["pixel_values"]
            assert got.shape == want.shape and got.dtype == np.float32, (i, got.shape, want.shape)
            # the same operations in the same order: equal (no 8-bit rounding unit apart)
            np.testing.assert_array_equal(got, want, err_msg=f"{name} {overrides} image {i} {im.shape}")


def test_float_images_follow_hf(tmp_path, rng):
    """Floats in [0, 1] are scaled to 0..255 and truncated to uint8 for Pillow, then scaled
    back; integer-valued floats are taken as 0..255, as HF's resize does."""
    hf, ours, _ = save_config(tmp_path, "ViTImageProcessor", {"size": {"height": 19, "width": 27}})
    unit = rng.random((41, 33, 3))  # float64 in [0, 1)
    ints = rng.integers(0, 256, size=(41, 33, 3)).astype(np.float32)
    for im in (unit, unit.astype(np.float32), ints):
        with np.errstate(all="ignore"):
            want = hf(im, return_tensors="np", input_data_format="channels_last")["pixel_values"]
        got = ours(im)["pixel_values"]
        # one unit of 8-bit rounding at most, relative to the normalised scale (1/255/std)
        assert np.abs(got - want).max() <= 1 / 255 / 0.5 + 1e-6


def test_batches_and_4d_arrays(tmp_path, rng):
    hf, ours, _ = save_config(tmp_path, "SiglipImageProcessor", {"size": {"height": 32, "width": 32}})
    ims = [rng.integers(0, 256, size=(45, 70, 3), dtype=np.uint8) for _ in range(3)]
    want = hf([PIL.Image.fromarray(a) for a in ims], return_tensors="np")["pixel_values"]
    np.testing.assert_array_equal(ours(ims)["pixel_values"], want)
    np.testing.assert_array_equal(ours(np.stack(ims))["pixel_values"], want)


def test_grayscale_and_rgba_pil_images_are_converted_to_rgb(tmp_path, rng):
    hf, ours, _ = save_config(
        tmp_path, "CLIPImageProcessor", {"size": {"shortest_edge": 20}, "crop_size": 20}
    )
    gray = PIL.Image.fromarray(rng.integers(0, 256, size=(30, 25), dtype=np.uint8))
    rgba = PIL.Image.fromarray(rng.integers(0, 256, size=(30, 25, 4), dtype=np.uint8))
    for im in (gray, rgba):
        want = hf(im.convert("RGB"), return_tensors="np")["pixel_values"]
        np.testing.assert_array_equal(ours(im)["pixel_values"], want)


def test_load_image_and_config_errors(tmp_path, rng):
    path = tmp_path / "x.png"
    PIL.Image.fromarray(rng.integers(0, 256, size=(9, 11, 3), dtype=np.uint8)).save(path)
    assert tfcore.image.load_image(path).size == (11, 9)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="not a readable image"):
        tfcore.image.load_image(tmp_path / "bad.png")
    (tmp_path / "cfg").mkdir()
    with pytest.raises(FileNotFoundError, match="preprocessor_config.json"):
        ImageProcessor.from_pretrained(tmp_path / "cfg")
    (tmp_path / "cfg" / "preprocessor_config.json").write_text(
        json.dumps({"size": {"height": 0, "width": 3}})
    )
    with pytest.raises(ValueError, match="positive int"):
        ImageProcessor.from_pretrained(tmp_path / "cfg")
    assert "bicubic" in repr(save_config(tmp_path, "CLIPImageProcessor", {})[1])
    # crop_pct needs a shortest-edge size and a fraction in (0, 1]
    with pytest.raises(ValueError, match="crop_pct must be in"):
        ImageProcessor(size={"shortest_edge": 224}, default_to_square=False, crop_pct=1.5)
    with pytest.raises(ValueError, match="shortest_edge"):
        ImageProcessor(size={"height": 224, "width": 224}, crop_pct=0.875)
    assert "crop_pct=0.875" in repr(ImageProcessor(size=224, default_to_square=False, crop_pct=0.875))
