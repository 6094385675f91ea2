"""COCO-17 keypoint metadata, as mmpose's configs/_base_/datasets/coco.py defines it (tests compare the two)."""
from __future__ import annotations

import numpy as np

KEYPOINT_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)
NUM_KEYPOINTS = len(KEYPOINT_NAMES)
# index of each keypoint's mirror image (used by flip test)
FLIP_INDICES = (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)
SKELETON_LINKS = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8),
    (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)
# per-keypoint OKS sigmas (COCO keypoint evaluation)
SIGMAS = np.array([0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072,
                   0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089], dtype=np.float32)

# mmpose's colours are RGB; a face/centre blue, left green, right orange
BLUE, GREEN, ORANGE = (51, 153, 255), (0, 255, 0), (255, 128, 0)   # draw.style colours other sets so too
KEYPOINT_COLORS_RGB = np.array([BLUE] * 5 + [GREEN, ORANGE] * 6, dtype=np.uint8)
LINK_COLORS_RGB = np.array([GREEN, GREEN, ORANGE, ORANGE] + [BLUE] * 4
                           + [GREEN, ORANGE, GREEN, ORANGE] + [BLUE] * 7, dtype=np.uint8)
