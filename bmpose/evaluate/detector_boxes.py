"""A detector's person boxes scored on a COCO set: ONNX Runtime and each of its bmodels, with the gate a bmodel's
boxes are held to (recall and box AP no more than the config's margins below ONNX's on the same images)."""
from __future__ import annotations

from pathlib import Path

from bmpose.calib import provenance
from bmpose.errors import BmposeError
from bmpose.evaluate.person_boxes import box_ap, box_recall


def score_detector(detector, ann: Path, img: Path) -> tuple[dict, list]:
    """Run `detector` (bmpose.runtime.detector.PersonDetector) on every image of the set at its eval_score_thr
    (AP rewards low-score boxes) and at its score_thr (what pictures and video keep).
    -> (row: box AP/AR, recall at IoU 0.5 at both thresholds, boxes; the PersonBoxes kept for evaluation)"""
    from bmpose.cocodata import load_coco_keypoints
    from bmpose.runtime.detector import detector_boxes

    dcfg = detector.cfg
    coco = load_coco_keypoints(ann, img)
    files = [coco.img_dir / im["file_name"] for im in coco.images.values()]
    boxes, skipped = detector_boxes(detector, files, dcfg.eval_score_thr, coco.image_ids_by_name())
    if skipped:
        raise BmposeError(f"{skipped[0][1]} (an evaluation image the detector cannot read)")
    dets = [{"image_id": b.image_id, "bbox": list(b.bbox), "score": b.score} for b in boxes]
    kept = [d for d in dets if d["score"] >= dcfg.score_thr]
    row = {"what": "person boxes, COCO bbox metric", **box_ap(ann, dets),
           "recall_iou50": box_recall(ann, dets), "recall_iou50_at_score_thr": box_recall(ann, kept),
           "boxes": len(dets), "eval_score_thr": dcfg.eval_score_thr, "score_thr": dcfg.score_thr,
           "eval_set": provenance.short(ann), "images": len(files),
           "seconds_per_frame": {k: v / max(len(files), 1) for k, v in detector.seconds.items()}}
    return row, boxes


def gate(row: dict, onnx_row: dict, limits: dict) -> dict:
    """-> {"passed", "recall_drop", "ap_drop", limits...}: a bmodel's boxes against ONNX's on the same images."""
    recall_drop = onnx_row["recall_iou50"]["recall"] - row["recall_iou50"]["recall"]
    ap_drop = onnx_row["AP"] - row["AP"]
    return {"passed": recall_drop <= limits["max_recall_drop"] + 1e-9 and ap_drop <= limits["max_ap_drop"] + 1e-9,
            "recall_drop": recall_drop, "ap_drop": ap_drop, **limits}


def scored_row(dcfg, ann: Path, img: Path, runtime: str | None, onnx_row: dict | None = None) -> dict:
    """One row: the detector (ONNX, or a build on `runtime`) on the set, reused while model and set are unchanged."""
    import json

    from bmpose.manifest import cached_result, result_key, write_result
    from bmpose.runtime.detector import PersonDetector

    model = dcfg.model_path(runtime)
    key = result_key({"model": model, "annotations": ann}, {"runtime": runtime, "summary": dcfg.summary(),
                                                            "thresholds": [dcfg.eval_score_thr, dcfg.score_thr]})
    cache = dcfg.layout.eval() / f"boxes_{dcfg.tag}.json"
    row = cached_result(cache, key)
    if row is None:
        print(f"detector: scoring {dcfg.tag} on {ann.name} ...", flush=True)
        detector = PersonDetector(dcfg, kind=runtime)
        scored, _ = score_detector(detector, ann, img)
        row = write_result(cache, key, {"label": dcfg.tag, "artifact": str(model), "backend": detector.backend.kind,
                                        "precision": dcfg.precision, **scored})
    if onnx_row is not None:
        row["gate"] = gate(row, onnx_row, dcfg.box_gate(dcfg.precision, dcfg.chip))
        m = json.loads((model.parent / "manifest.json").read_text())
        row["output_cos"] = m["checks"]["final"]["cosine"]
        row["device_ms"] = (m["checks"].get("device_time") or {}).get("runtime_ms")
    return row
