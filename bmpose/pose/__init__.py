"""The shared pre/post-processing core: crop, normalise, decode, draw. Imports numpy and cv2 only (and its own
modules, relatively), runs on Python 3.7+, and is what the device bundle ships; no I/O beyond reading images."""
from .errors import PoseError
from .crop import PersonCrop, affine_matrix, center_scale, crop_people, crop_person, image_to_input, input_to_image
from .image_io import read_image
from .normalize import normalize

__all__ = ["PersonCrop", "PoseError", "affine_matrix", "center_scale", "crop_people", "crop_person", "image_to_input", "input_to_image",
           "normalize", "read_image"]
