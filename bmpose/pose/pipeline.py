"""The top-down loop shared by `bmpose infer`/`eval` on the build machine and `bmodel.py` on the device:
crops -> normalised batches of the model's size -> heatmaps (optionally with the flip test) -> keypoints in
image pixels. The model is any `run(batch) -> heatmaps` callable; nothing here knows which backend it is.
A SimCC model (RTMPose) runs the same loop: its backends return the two vectors end to end, [N, K, Wx + Wy]
(`simcc_split` takes them apart); a regression model (BlazePose) its coordinates, [N, L * V] (`regression`).

`spec` is anything with the model's facts as attributes: input_size (w, h), padding, mean, std, bgr_to_rgb,
codec, shift_heatmap (bmpose's DeployConfig on the build machine, the bundle's deploy.json on the device).
"""
from __future__ import annotations

import numpy as np

from . import decode, regression, simcc
from .crop import crop_people, inputs_to_image
from .normalize import normalize


def crop_boxes(image_bgr: np.ndarray, boxes, spec, xyxy: bool = False) -> list:
    """One PersonCrop per box (xywh, or mmpose's xyxy ground-truth boxes with xyxy=True)."""
    return crop_people(image_bgr, boxes, spec.input_size, spec.padding, xyxy=xyxy)


def to_input(crops, spec) -> np.ndarray:
    """PersonCrops -> the network's float32 NCHW batch."""
    return normalize(np.stack([c.image for c in crops]), spec.mean, spec.std, network_rgb=spec.bgr_to_rgb)


def batches(inputs: np.ndarray, batch_size: int) -> tuple[list[np.ndarray], list[int]]:
    """Split (N, ...) into chunks of exactly batch_size; the last is padded with copies of its last row.
    Returns the chunks and how many rows of each are real."""
    chunks, sizes = [], []
    for i in range(0, len(inputs), batch_size):
        chunk = inputs[i:i + batch_size]
        sizes.append(len(chunk))
        if len(chunk) < batch_size:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch_size - len(chunk), axis=0)])
        chunks.append(chunk)
    return chunks, sizes


def with_flipped(inputs: np.ndarray) -> np.ndarray:
    """Each input followed by its mirror image, so the flip test runs in the same batches as the plain crops."""
    return np.stack([inputs, decode.flip_inputs(inputs)], axis=1).reshape(-1, *inputs.shape[1:])


def is_simcc(codec: dict) -> bool:
    return codec.get("type") == "SimCCLabel"


def join_outputs(outputs) -> np.ndarray:
    """A network's outputs as one float32 array: the one output, or several (SimCC's simcc_x, simcc_y) end to
    end along the last axis, in graph order; what every backend returns and `simcc_split` takes apart."""
    outputs = [np.asarray(o) for o in outputs]
    y = outputs[0] if len(outputs) == 1 else np.concatenate(outputs, axis=-1)
    return y.astype(np.float32, copy=False)


def simcc_split(outputs: np.ndarray, codec: dict) -> tuple[np.ndarray, np.ndarray]:
    """[N, K, Wx + Wy] -> simcc_x [N, K, Wx], simcc_y [N, K, Wy] (Wx = input width x split ratio)."""
    wx = int(round(codec["input_size"][0] * codec["simcc_split_ratio"]))
    return outputs[..., :wx], outputs[..., wx:]


def merge_flipped(heatmaps: np.ndarray, flip_indices, shift_heatmap: bool, codec: dict | None = None,
                  shift_coords: bool = True) -> np.ndarray:
    """Outputs of `with_flipped` inputs -> the flip-test outputs of the original crops (heatmaps, SimCC's
    vectors end to end, or a regression model's coordinates, as `codec` says)."""
    hm = heatmaps.reshape(len(heatmaps) // 2, 2, *heatmaps.shape[1:])
    if codec is not None and codec.get("type") == "RegressionLabel":
        return regression.merge_flip_regression(hm[:, 0], hm[:, 1], codec, flip_indices, shift_coords)
    if codec is not None and is_simcc(codec):
        (x, y), (fx, fy) = simcc_split(hm[:, 0], codec), simcc_split(hm[:, 1], codec)
        return np.concatenate(simcc.merge_flip_simcc(x, y, fx, fy, flip_indices), axis=-1)
    return decode.merge_flip(hm[:, 0], hm[:, 1], flip_indices, shift_heatmap)


def keypoint_count(outputs: np.ndarray, codec: dict) -> int:
    """How many keypoints a network's outputs hold (heatmaps and SimCC: axis 1; a regression model: its
    codec's keypoints when the output has that many landmarks, else the landmarks it has)."""
    if codec.get("type") == "RegressionLabel":
        landmarks = outputs[0].size // int(codec.get("values_per_keypoint", 2)) if len(outputs) else 0
        return min(landmarks, int(codec["num_keypoints"]))
    return int(outputs.shape[1])


def run_model(run, inputs: np.ndarray, batch_size: int, on_batch=None) -> np.ndarray:
    """Heatmaps of every input through `run` in batches of batch_size (padding dropped). `on_batch(n)` is
    called after each batch with its number of real inputs (progress)."""
    chunks, sizes = batches(inputs, batch_size)
    outs = []
    for chunk, n in zip(chunks, sizes):
        outs.append(np.asarray(run(chunk))[:n])
        if on_batch is not None:
            on_batch(n)
    return np.concatenate(outs) if outs else np.zeros((0,), np.float32)


def keypoints(heatmaps: np.ndarray, crops, spec) -> tuple[np.ndarray, np.ndarray]:
    """Heatmaps (N, K, h, w) (or SimCC vectors end to end) of `crops` -> keypoints (N, K, 2) in image pixels,
    scores (N, K)."""
    if spec.codec.get("type") == "RegressionLabel":
        kpts, scores = regression.decode_regression(heatmaps, spec.codec)
    elif is_simcc(spec.codec):
        kpts, scores = simcc.decode_simcc(*simcc_split(heatmaps, spec.codec), spec.codec["simcc_split_ratio"])
    else:
        kpts, scores = decode.decode(heatmaps, spec.codec)
    out = inputs_to_image(kpts, [c.center for c in crops], [c.scale for c in crops], spec.input_size) \
        if len(crops) else kpts
    return out, scores
