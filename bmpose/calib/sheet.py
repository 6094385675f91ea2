"""The calibration set's contact sheet: a grid of sampled crops with their ground-truth keypoints."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from bmpose.calib.store import iter_records, read_meta
from bmpose.errors import BmposeError
from bmpose.pose import image_to_input


SHEET_NAME = "contact_sheet.png"


def write_contact_sheet(lmdb_path, png_path, max_crops: int = 48, columns: int = 8) -> Path:
    """A grid of up to max_crops crops (evenly sampled) with their ground-truth keypoints mapped into the crop."""
    import cv2

    from bmpose.pose.draw import draw_pose

    meta = read_meta(lmdb_path)
    count = meta["count"]
    picks = set(np.linspace(0, count - 1, min(max_crops, count)).round().astype(int).tolist())
    tiles = []
    for i, rec in enumerate(iter_records(lmdb_path)):
        if i not in picks:
            continue
        tile = np.ascontiguousarray(rec.image[..., ::-1])  # RGB -> BGR for cv2
        w, h = tile.shape[1], tile.shape[0]
        if rec.keypoints is not None:
            kp = image_to_input(rec.keypoints[:, :2], rec.center, rec.scale, (w, h))
            draw_pose(tile, kp, (rec.keypoints[:, 2] > 0).astype(np.float32), kpt_thr=0.5)
        label = str(rec.ann_id if rec.ann_id is not None else rec.file)
        cv2.putText(tile, label, (2, h - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.3, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(cv2.copyMakeBorder(tile, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=(40, 40, 40)))
    rows = []
    blank = np.zeros_like(tiles[0])
    for r in range(0, len(tiles), columns):
        row = tiles[r:r + columns]
        rows.append(np.hstack(row + [blank] * (columns - len(row))))
    sheet = np.vstack(rows)
    if sheet.shape[1] < 1024:  # small models (96 px crops) are unreadable at 1:1
        f = 1024 // sheet.shape[1] + 1
        sheet = cv2.resize(sheet, None, fx=f, fy=f, interpolation=cv2.INTER_NEAREST)
    png_path = Path(png_path)
    if not cv2.imwrite(str(png_path), sheet):
        raise BmposeError(f"{png_path}: cannot write contact sheet")
    return png_path
