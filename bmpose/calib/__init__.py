"""Calibration set: COCO person crops (selected, cropped by the shared core) -> LMDB, contact sheet, and the
npz inputs TPU-MLIR's calibration reads."""
