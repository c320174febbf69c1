"""Image preprocessing without torch: ``preprocessor_config.json`` -> ``pixel_values``.

``ImageProcessor.from_pretrained(dir)`` reads the Hugging Face image processor config (ViT,
DeiT, CLIP, SigLIP, BEiT, Swin, ... processors: resize, center crop, rescale, normalise) and
turns PIL images or NumPy arrays into the float32 ``(B, 3, H, W)`` batch the vision models take,
with the same values as ``transformers``' PIL-backend processors (``CLIPImageProcessorPil`` and
friends, what ``AutoImageProcessor`` gives without torchvision): resizing goes through Pillow
exactly as theirs does (same filter, same uint8 round trip), crop, rescale and normalise are the
same float operations in the same order. Pillow is needed for resizing (``pip install
"tfcore[vision]"``).

    proc = tfcore.image.ImageProcessor.from_pretrained("clip-dir")
    pixel_values = proc([PIL.Image.open("cat.jpg"), np_uint8_hwc])["pixel_values"]
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ._C import TfcoreTypeError, TfcoreValueError

__all__ = ["ImageProcessor", "AutoImageProcessor", "load_image"]

# PIL's resampling filters by the numbers HF configs store (PIL.Image.Resampling values)
RESAMPLE_NAMES = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
# Images larger than this are refused before any work (a decompression bomb or a mistake):
# 2**27 pixels is 384 MiB as 8-bit RGB
MAX_PIXELS = 1 << 27


def _pil():
    try:
        import PIL.Image
    except ImportError as e:  # pragma: no cover - Pillow is in the vision and test extras
        raise ImportError('resizing images needs Pillow: pip install "tfcore[vision]"') from e
    return PIL.Image


def load_image(path: Union[str, os.PathLike]):
    """Open an image file with Pillow as RGB (raises ValueError naming the file if it is not an
    image Pillow can read)."""
    Image = _pil()
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except (OSError, SyntaxError, Image.DecompressionBombError) as e:
        raise TfcoreValueError(f"{os.fspath(path)}: not a readable image ({e})") from e


def _size_dict(value, name: str, default_to_square: bool) -> Dict[str, int]:
    """HF's size forms: {'height', 'width'}, {'shortest_edge'} (+ 'longest_edge'), or an int."""
    if isinstance(value, bool):
        raise TfcoreTypeError(f"{name} must be a dict or an int, got bool")
    if isinstance(value, int):
        return {"height": value, "width": value} if default_to_square else {"shortest_edge": value}
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return {"height": int(value[0]), "width": int(value[1])}
    if not isinstance(value, dict):
        raise TfcoreTypeError(f"{name} must be a dict like {{'height': 224, 'width': 224}}, got {value!r}")
    keys = set(k for k, v in value.items() if v is not None)
    if keys not in ({"height", "width"}, {"shortest_edge"}, {"shortest_edge", "longest_edge"}):
        raise TfcoreValueError(
            f"{name} {value!r} is not supported: expected {{'height', 'width'}}, {{'shortest_edge'}} "
            "or {'shortest_edge', 'longest_edge'}"
        )
    out = {k: value[k] for k in keys}
    for k, v in out.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise TfcoreValueError(f"{name}[{k!r}] must be a positive int, got {v!r}")
    return out


def _as_chw(image, index: int) -> np.ndarray:
    """One image as a (3, H, W) array (uint8 or float), validated: a PIL image (converted to
    RGB) or a NumPy array (H, W, 3) / (3, H, W)."""
    if not isinstance(image, np.ndarray):
        try:
            import PIL.Image
        except ImportError:
            PIL = None
        if PIL is not None and isinstance(image, PIL.Image.Image):
            w, h = image.size
            if w * h > MAX_PIXELS:
                raise TfcoreValueError(
                    f"image {index} has {w}x{h} pixels, more than the {MAX_PIXELS} accepted"
                )
            if w == 0 or h == 0:
                raise TfcoreValueError(f"image {index} is empty ({w}x{h})")
            return np.moveaxis(np.array(image.convert("RGB")), -1, 0)
        raise TfcoreTypeError(
            f"image {index} must be a PIL image or a numpy.ndarray, got {type(image).__name__}"
        )
    a = image
    if a.ndim != 3:
        raise TfcoreValueError(
            f"image {index} must be (H, W, 3) or (3, H, W), got shape {a.shape}"
            + (
                " (grayscale: repeat it to 3 channels with np.repeat(x[..., None], 3, -1))"
                if a.ndim == 2
                else ""
            )
        )
    # channels first when the first axis is 3 (HF's choice for ambiguous (3, H, 3) too), else
    # channels last when the last axis could be channels (a 1-pixel-high (1, W, 3) image is
    # HWC here, where HF's inference would read it as one channel)
    if a.shape[0] == 3:
        chw = a
    elif a.shape[-1] in (1, 3, 4):
        chw = np.moveaxis(a, -1, 0)
    elif a.shape[0] in (1, 4):
        chw = a
    else:
        raise TfcoreValueError(
            f"image {index} of shape {a.shape} has no channel axis of 1, 3 or 4 first or last"
        )
    if chw.shape[0] != 3:
        hint = "drop the alpha channel with x[..., :3]" if chw.shape[0] == 4 else "repeat it to 3 channels"
        raise TfcoreValueError(f"image {index} has {chw.shape[0]} channels, expected 3 (RGB): {hint}")
    h, w = chw.shape[1:]
    if h == 0 or w == 0:
        raise TfcoreValueError(f"image {index} is empty (shape {a.shape})")
    if h * w > MAX_PIXELS:
        raise TfcoreValueError(f"image {index} has {w}x{h} pixels, more than the {MAX_PIXELS} accepted")
    if a.dtype == np.uint8:
        return chw
    if a.dtype.kind not in "fiu" or a.dtype.kind == "f" and a.dtype.itemsize > 8:
        raise TfcoreTypeError(f"image {index} must be uint8 or a float/int array, got {a.dtype}")
    if not np.isfinite(a).all():
        raise TfcoreValueError(f"image {index} contains NaN or Inf")
    return chw


def _list_of_images(images) -> List[Any]:
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return list(images)
    if isinstance(images, (list, tuple)):
        if len(images) == 0:
            raise TfcoreValueError("images is an empty list")
        return list(images)
    return [images]


class ImageProcessor:
    """Resize (Pillow, HF's filter), center crop, rescale and normalise, as configured by a
    ``preprocessor_config.json``; the same arguments and defaults as HF's image processors."""

    def __init__(
        self,
        *,
        do_resize: bool = True,
        size: Any = None,
        resample: int = 2,
        do_center_crop: bool = False,
        crop_size: Any = None,
        do_rescale: bool = True,
        rescale_factor: float = 1 / 255,
        do_normalize: bool = True,
        image_mean: Union[float, Sequence[float]] = (0.5, 0.5, 0.5),
        image_std: Union[float, Sequence[float]] = (0.5, 0.5, 0.5),
        default_to_square: bool = True,
        image_processor_type: Optional[str] = None,
        crop_pct: Optional[float] = None,
    ) -> None:
        if resample not in RESAMPLE_NAMES:
            raise TfcoreValueError(
                f"resample must be one of {sorted(RESAMPLE_NAMES)} (PIL filters), got {resample!r}"
            )
        self.do_resize = bool(do_resize)
        self.size = (
            _size_dict(224 if size is None else size, "size", default_to_square) if do_resize else None
        )
        self.resample = int(resample)
        self.do_center_crop = bool(do_center_crop)
        self.crop_size = (
            _size_dict(224 if crop_size is None else crop_size, "crop_size", True) if do_center_crop else None
        )
        if self.crop_size is not None and "height" not in self.crop_size:
            raise TfcoreValueError(f"crop_size must have 'height' and 'width', got {crop_size!r}")
        rescale_factor = float(rescale_factor)
        if not math.isfinite(rescale_factor):
            raise TfcoreValueError(f"rescale_factor must be finite, got {rescale_factor}")
        self.do_rescale, self.rescale_factor = bool(do_rescale), rescale_factor
        self.do_normalize = bool(do_normalize)
        mean = [float(image_mean)] * 3 if np.isscalar(image_mean) else [float(v) for v in image_mean]
        std = [float(image_std)] * 3 if np.isscalar(image_std) else [float(v) for v in image_std]
        if len(mean) != 3 or len(std) != 3:
            raise TfcoreValueError(
                f"image_mean and image_std need 3 values (RGB), got {len(mean)} and {len(std)}"
            )
        if not all(math.isfinite(v) for v in mean + std) or any(v == 0 for v in std):
            raise TfcoreValueError(
                f"image_mean must be finite and image_std finite and non-zero, got {mean}, {std}"
            )
        self.image_mean, self.image_std = mean, std
        self.image_processor_type = image_processor_type
        self.crop_pct = None
        if crop_pct is not None and self.do_resize:
            crop_pct = float(crop_pct)
            if not (0 < crop_pct <= 1):
                raise TfcoreValueError(f"crop_pct must be in (0, 1], got {crop_pct}")
            if "shortest_edge" not in self.size or "longest_edge" in self.size:
                raise TfcoreValueError(f"crop_pct needs size={{'shortest_edge': n}}, got {self.size}")
            self.crop_pct = crop_pct

    @classmethod
    def from_pretrained(cls, directory: Union[str, os.PathLike]) -> "ImageProcessor":
        """Read ``directory/preprocessor_config.json`` (or that file itself)."""
        path = os.fspath(directory)
        if os.path.isdir(path):
            path = os.path.join(path, "preprocessor_config.json")
        try:
            with open(path, encoding="utf-8") as f:
                cfg = json.load(f)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{path}: no preprocessor_config.json (the image processor's settings)"
            ) from None
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise TfcoreValueError(f"{path}: not valid JSON ({e})") from e
        if not isinstance(cfg, dict):
            raise TfcoreValueError(f"{path}: expected a JSON object, got {type(cfg).__name__}")
        kind = cfg.get("image_processor_type") or ""
        # CLIP-style processors resize the shortest edge when size is a bare int (ConvNeXt's,
        # which CvT uses, too)
        square = not kind.startswith(("CLIP", "Chinese", "BitImage", "MobileNet", "ConvNext"))
        keys = [
            "do_resize",
            "size",
            "resample",
            "do_center_crop",
            "crop_size",
            "do_rescale",
            "rescale_factor",
            "do_normalize",
            "image_mean",
            "image_std",
            "crop_pct",
        ]
        kwargs = {k: cfg[k] for k in keys if k in cfg and cfg[k] is not None}
        try:
            return cls(default_to_square=square, image_processor_type=kind or None, **kwargs)
        except (TypeError, ValueError) as e:  # the arguments' messages, with the file
            raise TfcoreValueError(f"{path}: {e}") from e

    # ------------------------------------------------------------------ the steps

    def _resize_to(self, chw: np.ndarray) -> Tuple[int, int]:
        h, w = chw.shape[1:]
        s = self.size
        if "height" in s:
            return s["height"], s["width"]
        short, long = (w, h) if w <= h else (h, w)
        if self.crop_pct is not None:  # ConvNeXt's rule (CvT): see preprocess_one
            edge = s["shortest_edge"]
            if edge >= 384:
                return edge, edge  # warped, no crop
            target = int(edge / self.crop_pct)
            new_short, new_long = target, int(target * long / short)
            return (new_long, new_short) if w <= h else (new_short, new_long)
        if "longest_edge" in s:  # HF's get_size_with_aspect_ratio
            size, max_size, raw = s["shortest_edge"], s["longest_edge"], None
            if max(h, w) / min(h, w) * size > max_size:
                raw = max_size * min(h, w) / max(h, w)
                size = int(round(raw))
            if (h <= w and h == size) or (w <= h and w == size):
                return h, w
            if w < h:
                return int((raw if raw is not None else size) * h / w), size
            return size, int((raw if raw is not None else size) * w / h)
        new_short, new_long = s["shortest_edge"], int(s["shortest_edge"] * long / short)
        return (new_long, new_short) if w <= h else (new_short, new_long)

    def resize(self, chw: np.ndarray) -> np.ndarray:
        """(3, H, W) -> (3, h, w) through Pillow, as HF does: uint8 (or integral floats in
        [0, 255]) as they are; floats in [0, 1] scaled to 0..255 and truncated to uint8, then
        scaled back by 1/255 after resizing."""
        Image = _pil()
        height, width = self._resize_to(chw)
        hwc = np.moveaxis(chw, 0, -1)
        to_unit = False
        if hwc.dtype != np.uint8:
            if np.allclose(hwc, hwc.astype(int)):
                if not (hwc.min() >= 0 and hwc.max() <= 255):
                    raise TfcoreValueError(
                        f"an integer-valued image must be in [0, 255] to resize, got [{hwc.min()}, {hwc.max()}]"
                    )
            elif hwc.min() >= 0 and hwc.max() <= 1:
                to_unit = True
                hwc = (hwc.astype(np.float64) * 255).astype(np.float32)
            else:
                raise TfcoreValueError(
                    f"a float image must be in [0, 1] (or integer-valued in [0, 255]) to resize, "
                    f"got [{hwc.min()}, {hwc.max()}]"
                )
            hwc = hwc.astype(np.uint8)
        out = np.array(
            Image.fromarray(np.ascontiguousarray(hwc)).resize((width, height), resample=self.resample)
        )
        out = np.moveaxis(out, -1, 0)
        return (out.astype(np.float64) * (1 / 255)).astype(np.float32) if to_unit else out

    def center_crop(self, chw: np.ndarray, size: Optional[Tuple[int, int]] = None) -> np.ndarray:
        """(3, H, W) -> (3, crop_h, crop_w) (crop_size, or size) around the centre; zero padding
        where the image is smaller (HF's offsets)."""
        ch, cw = size or (self.crop_size["height"], self.crop_size["width"])
        h, w = chw.shape[1:]
        top, left = (h - ch) // 2, (w - cw) // 2
        if top >= 0 and left >= 0 and top + ch <= h and left + cw <= w:
            return chw[:, top : top + ch, left : left + cw]
        nh, nw = max(ch, h), max(cw, w)
        padded = np.zeros((chw.shape[0], nh, nw), chw.dtype)
        tp, lp = math.ceil((nh - h) / 2), math.ceil((nw - w) / 2)
        padded[:, tp : tp + h, lp : lp + w] = chw
        top, left = top + tp, left + lp
        return padded[:, max(top, 0) : min(top + ch, nh), max(left, 0) : min(left + cw, nw)]

    def preprocess_one(self, image, index: int = 0) -> np.ndarray:
        chw = _as_chw(image, index)
        if self.do_resize:
            chw = self.resize(chw)
            edge = self.size.get("shortest_edge", 0)
            if self.crop_pct is not None and edge < 384:
                # ConvNeXt / CvT: the shortest edge went to int(edge / crop_pct), now the
                # central edge x edge square (at 384 and above the image was warped instead)
                chw = self.center_crop(chw, (edge, edge))
        if self.do_center_crop:
            chw = self.center_crop(chw)
        if self.do_rescale:
            chw = (chw.astype(np.float64) * self.rescale_factor).astype(np.float32)
        if self.do_normalize:
            if chw.dtype.kind != "f":
                chw = chw.astype(np.float32)
            mean = np.array(self.image_mean, dtype=chw.dtype)
            std = np.array(self.image_std, dtype=chw.dtype)
            chw = ((chw.T - mean) / std).T
        return np.ascontiguousarray(chw, dtype=np.float32)

    def __call__(self, images, return_tensors: Optional[str] = "np") -> Dict[str, np.ndarray]:
        """images: a PIL image, an (H, W, 3) / (3, H, W) array, a list of them, or a 4-D array
        (a batch). Returns ``{"pixel_values": (B, 3, H, W) float32}``."""
        if return_tensors not in (None, "np"):
            raise TfcoreValueError(
                f"return_tensors must be 'np' (NumPy arrays; tfcore has no torch), got {return_tensors!r}"
            )
        out = [self.preprocess_one(im, i) for i, im in enumerate(_list_of_images(images))]
        shapes = {a.shape for a in out}
        if len(shapes) > 1:
            raise TfcoreValueError(
                f"the images came out in different sizes {sorted(shapes)} (no center crop to a fixed size): "
                "preprocess them one at a time"
            )
        return {"pixel_values": np.stack(out)}

    def __repr__(self) -> str:
        parts = [f"size={self.size}" if self.do_resize else "do_resize=False"]
        if self.do_resize:
            parts.append(f"resample={RESAMPLE_NAMES[self.resample]}")
        if self.crop_pct is not None:
            parts.append(f"crop_pct={self.crop_pct}")
        if self.do_center_crop:
            parts.append(f"crop_size={self.crop_size}")
        parts.append(f"rescale={self.rescale_factor if self.do_rescale else None}")
        if self.do_normalize:
            parts.append(f"mean={self.image_mean}, std={self.image_std}")
        return f"ImageProcessor({', '.join(parts)})"


AutoImageProcessor = ImageProcessor
