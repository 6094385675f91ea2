"""The bundled trained detector (configs/detectors/yolox_nano_416.yaml) on ONNX Runtime finds the bundled COCO
val persons: person-box recall and COCO person bbox AP, through the shared core's letterbox/decode/NMS."""
import json

import pytest

from bmpose.detector_config import load_detector
from bmpose.evaluate.person_boxes import box_ap, box_recall
from bmpose.evaluate.sets import eval_set
from bmpose.runtime.detector import PersonDetector, detector_boxes

# Measured (ONNX Runtime, 2-core AMD EPYC) on the 26 bundled val images, 56 non-crowd persons > 32x32:
# recall at IoU 0.5 55/56 = 0.982 with the evaluation threshold (0.01), 47/56 = 0.839 at the picture threshold
# (0.3); person bbox AP 0.5527 (0.01) / 0.4871 (0.3). Gates: one person less (recall), AP minus 0.05.
MIN_RECALL = {0.01: 0.96, 0.3: 0.82}
MIN_AP = {0.01: 0.50, 0.3: 0.43}


@pytest.fixture(scope="module")
def detections():
    ann, root = eval_set()
    images = json.loads(ann.read_text())["images"]
    files = [root / im["file_name"] for im in images]
    ids = {f.name: im["id"] for f, im in zip(files, images)}
    det = PersonDetector(load_detector("yolox_nano_416"))
    out = {}
    for thr in MIN_RECALL:
        boxes, skipped = detector_boxes(det, files, thr, ids)
        assert not skipped
        out[thr] = [{"image_id": b.image_id, "bbox": list(b.bbox), "score": b.score} for b in boxes]
    return ann, out


@pytest.mark.parametrize("thr", sorted(MIN_RECALL))
def test_yolox_nano_finds_the_bundled_persons(detections, thr):
    ann, dets = detections
    r, ap = box_recall(ann, dets[thr]), box_ap(ann, dets[thr])
    print(f"score >= {thr}: {len(dets[thr])} boxes, recall {r['found']}/{r['persons']}, person box AP {ap['AP']:.4f}")
    assert r["persons"] == 56
    assert r["recall"] >= MIN_RECALL[thr] and ap["AP"] >= MIN_AP[thr]


def test_scores_and_boxes_are_sane(detections):
    _, dets = detections
    low, high = dets[0.01], dets[0.3]
    assert len(high) < len(low) and all(d["score"] >= 0.3 for d in high)
    assert all(d["bbox"][2] > 0 and d["bbox"][3] > 0 for d in low)
