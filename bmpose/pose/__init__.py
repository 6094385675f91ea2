"""The shared preprocessing core: imports numpy, cv2 and bmpose.errors only; no I/O beyond reading images."""
from .crop import PersonCrop, affine_matrix, center_scale, crop_person, image_to_input, input_to_image
from .image_io import read_image
from .normalize import normalize

__all__ = ["PersonCrop", "affine_matrix", "center_scale", "crop_person", "image_to_input", "input_to_image",
           "normalize", "read_image"]
