"""COCO keypoint AP: the metric as mmpose's CocoMetric computes it (`coco`), and the evaluation of every
artifact of a model (`run`)."""
