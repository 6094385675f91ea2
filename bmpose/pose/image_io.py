"""Reading images the way mmpose's LoadImage does (cv2 decode, BGR, EXIF orientation applied), with errors
that name the file instead of a None image further down."""
from __future__ import annotations

import os

import cv2
import numpy as np

from .errors import PoseError

# What counts as an image file, everywhere (inference folders, the device, calibration folders): what OpenCV's
# imdecode reads in the wheels bmpose pins.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Image file -> BGR uint8 HxWx3. PoseError naming the file if it is missing, truncated or undecodable."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise PoseError(f"{path}: image file not found") from None
    except OSError as e:
        raise PoseError(f"{path}: cannot read image ({e.strerror})") from None
    if data[:2] == b"\xff\xd8" and _jpeg_truncated(data):
        # libjpeg only warns on a truncated file and returns grey-filled rows; a calibration set must not
        # silently contain those
        raise PoseError(f"{path}: truncated JPEG (no end-of-image marker after the last scan)")
    # same call as mmcv.imfrombytes(backend='cv2', flag='color') used by mmpose's LoadImage
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if img is None:
        raise PoseError(f"{path}: not a decodable image")
    return img


def _jpeg_truncated(data: bytes) -> bool:
    # Inside entropy-coded data 0xFF is always stuffed (FF00), so an EOI (FFD9) after the last SOS (FFDA)
    # exists iff the final scan is complete. An EXIF thumbnail's EOI comes before the main scan.
    last_sos = data.rfind(b"\xff\xda")
    return last_sos < 0 or data.find(b"\xff\xd9", last_sos) < 0
