"""The vendor sample's documented host steps (sophon-demo's HRNet and YOLOX Python), re-written as the
baselines the host benchmarks compare bmpose's core against; never used for inference."""
from __future__ import annotations

import cv2
import numpy as np



def letterbox(frame, size):
    """sophon-demo's YOLO Python preprocessing, as documented: centred letterbox (resize + copyMakeBorder 114),
    BGR->RGB, HWC->CHW, /255 as float32. Re-implemented here for the comparison only."""
    h, w = frame.shape[:2]
    r = min(size[0] / w, size[1] / h)
    nw, nh = int(round(w * r)), int(round(h * r))
    img = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_LINEAR)
    top, left = (size[1] - nh) // 2, (size[0] - nw) // 2
    img = cv2.copyMakeBorder(img, top, size[1] - nh - top, left, size[0] - nw - left, cv2.BORDER_CONSTANT,
                             value=(114, 114, 114))
    img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB).transpose(2, 0, 1).astype(np.float32) / 255.0
    return np.expand_dims(np.ascontiguousarray(img), 0)


def nms(boxes, scores, thr):
    """The classic numpy NMS loop the vendor's Python samples use."""
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1) * (y2 - y1)
    order = scores.argsort()[::-1]
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        xx1, yy1 = np.maximum(x1[i], x1[order[1:]]), np.maximum(y1[i], y1[order[1:]])
        xx2, yy2 = np.minimum(x2[i], x2[order[1:]]), np.minimum(y2[i], y2[order[1:]])
        inter = np.maximum(0.0, xx2 - xx1) * np.maximum(0.0, yy2 - yy1)
        order = order[1:][inter / (areas[i] + areas[order[1:]] - inter) <= thr]
    return keep


def detect_post(raw, input_hw, strides, score_thr, iou):
    """Per-anchor decode of the YOLOX output in numpy, score filter, NMS (the vendor sample's shape of it)."""
    grids, expanded = [], []
    for s in strides:
        hs, ws = input_hw[0] // s, input_hw[1] // s
        xv, yv = np.meshgrid(np.arange(ws), np.arange(hs))
        grids.append(np.stack((xv, yv), 2).reshape(-1, 2))
        expanded.append(np.full((hs * ws, 1), s))
    grids, expanded = np.concatenate(grids), np.concatenate(expanded)
    out = raw.copy()
    out[:, :2] = (out[:, :2] + grids) * expanded
    out[:, 2:4] = np.exp(out[:, 2:4]) * expanded
    scores = out[:, 4] * out[:, 5]
    m = scores > score_thr
    b = out[m, :4]
    xyxy = np.concatenate([b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2], 1)
    return xyxy[nms(xyxy, scores[m], iou)] if len(xyxy) else xyxy


def pose_pre(frame, boxes, w, h, mean, std):
    """sophon-demo's HRNet Python preprocessing per person: affine warp of the padded box, RGB, /255,
    normalise, CHW."""
    out = []
    for x, y, bw, bh in boxes:
        c = np.array([x + bw / 2, y + bh / 2], np.float32)
        if bw > bh * w / h:
            bh = bw * h / w
        else:
            bw = bh * w / h
        sw, sh = bw * 1.25, bh * 1.25
        src = np.float32([c, c + [0, -sh / 2], c + [-sw / 2, -sh / 2]])
        dst = np.float32([[w / 2, h / 2], [w / 2, 0], [0, 0]])
        m = cv2.getAffineTransform(src, dst)
        img = cv2.warpAffine(frame, m, (w, h), flags=cv2.INTER_LINEAR)[..., ::-1] / 255.0
        out.append(((img - mean) / std).transpose(2, 0, 1).astype(np.float32))
    return np.stack(out)


def pose_post(heatmaps, boxes, w, h):
    """Per person: argmax, quarter-pixel shift toward the higher neighbour, back through the inverse affine."""
    n, k, hh, hw = heatmaps.shape
    res = []
    for i in range(n):
        flat = heatmaps[i].reshape(k, -1)
        idx, maxv = flat.argmax(1), flat.max(1)
        preds = np.stack([idx % hw, idx // hw], 1).astype(np.float32)
        for j in range(k):
            px, py = int(preds[j, 0]), int(preds[j, 1])
            if 1 < px < hw - 1 and 1 < py < hh - 1:
                hm = heatmaps[i, j]
                preds[j] += np.sign([hm[py, px + 1] - hm[py, px - 1], hm[py + 1, px] - hm[py - 1, px]]) * 0.25
        x, y, bw, bh = boxes[i]
        scale = np.array([bw, bh]) * 1.25 / [hw, hh]
        res.append((preds * scale + [x - bw * 0.125, y - bh * 0.125], maxv))
    return res
