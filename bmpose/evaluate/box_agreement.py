"""A detector build's fidelity without labels: its person boxes scored against the float model's boxes on the
same frames, the float boxes standing in for the ground truth (a pseudo ground truth: ONNX's persons at the
picture threshold). What quantization loses shows as boxes that move (box AP over IoU 0.5:0.95) and persons the
build no longer keeps at the picture threshold (found share); measure it on frames never used for calibration."""
from __future__ import annotations

import functools
from pathlib import Path

from bmpose.errors import BmposeError
from bmpose.evaluate.person_boxes import PERSON, box_ap, box_recall


def pseudo_truth(reference: list[dict], images: list[int], score_thr: float) -> dict:
    """ONNX's detections (COCO results: image_id, bbox xywh, score) at or above `score_thr` as a COCO annotation
    set: the persons a float build would draw."""
    kept = [d for d in reference if d["score"] >= score_thr]
    return {"images": [{"id": i} for i in images], "categories": [{"id": PERSON, "name": "person"}],
            "annotations": [{"id": n + 1, "image_id": d["image_id"], "category_id": PERSON, "iscrowd": 0,
                             "bbox": list(d["bbox"]), "area": float(d["bbox"][2] * d["bbox"][3])}
                            for n, d in enumerate(kept)]}


def boxes_vs_float(dets: list[dict], reference: list[dict], images: list[int], score_thr: float) -> dict:
    """-> {"box_ap_vs_float": COCO bbox AP of `dets` (all scores) against the float persons, "found_vs_float":
    share of the float persons a box of `dets` at the picture threshold overlaps at IoU >= 0.5, "float_persons"}."""
    truth = pseudo_truth(reference, images, score_thr)
    if not truth["annotations"]:
        return {"box_ap_vs_float": None, "found_vs_float": None, "float_persons": 0}
    kept = [d for d in dets if d["score"] >= score_thr]
    found = box_recall(truth, kept, min_area=0)
    return {"box_ap_vs_float": box_ap(truth, dets)["AP"], "found_vs_float": found["recall"],
            "float_persons": found["persons"]}


class DetectorFidelity:
    """A detector build's agreement with its ONNX model (bmpose.evaluate.box_agreement) on frames it was never
    calibrated on, with the labelled box AP beside it: the measure `--precision auto` holds builds to."""

    def __init__(self, dcfg, frames_ann: Path, labelled_ann: Path):
        from bmpose.cocodata import load_coco_keypoints

        self.cfg, self.labelled_ann = dcfg, labelled_ann
        coco = load_coco_keypoints(frames_ann, frames_ann.parent)
        self.files = [coco.img_dir / im["file_name"] for im in coco.images.values()]
        self.ids = coco.image_ids_by_name()
        self.images = sorted(self.ids.values())

    @functools.cached_property
    def reference(self) -> list[dict]:
        """ONNX's boxes, run on the first measurement (a reused choice measures nothing)."""
        from bmpose.runtime.detector import PersonDetector

        return self.detections(PersonDetector(self.cfg))

    def detections(self, detector) -> list[dict]:
        from bmpose.runtime.detector import detector_boxes

        boxes, skipped = detector_boxes(detector, self.files, self.cfg.eval_score_thr, self.ids)
        if skipped:
            raise BmposeError(f"{skipped[0][0]}: {skipped[0][1]}")
        return [{"image_id": b.image_id, "bbox": list(b.bbox), "score": b.score} for b in boxes]

    def score(self, dets: list[dict]) -> dict:
        from bmpose.evaluate.coco import load_gt
        from bmpose.evaluate.person_boxes import box_ap

        labelled = {im for im in load_gt(self.labelled_ann).getImgIds()}
        return {**boxes_vs_float(dets, self.reference, self.images, self.cfg.score_thr),
                "box_ap": box_ap(self.labelled_ann, [d for d in dets if d["image_id"] in labelled])["AP"]}

    def __call__(self, build_dir: Path) -> tuple[float, dict]:
        from bmpose.manifest import read_manifest
        from bmpose.runtime.backends import open_backend
        from bmpose.runtime.detector import PersonDetector

        m = read_manifest(build_dir)
        backend = open_backend(build_dir / m["tpu_mlir"], kind="mlir")
        s = self.score(self.detections(PersonDetector(self.cfg, backend=backend)))
        return s["box_ap_vs_float"], s
