"""Which images calibrated a build (bmpose.calib.provenance), and evaluation refusing to score an INT8 build on
them (bmpose.evaluate.run._check_calibration)."""
import shutil
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest

from bmpose import config
from bmpose.calib import calibset, provenance, select, store
from bmpose.errors import BmposeError
from bmpose.evaluate import run as eval_run
from bmpose.runtime import boxes


@pytest.fixture(scope="module")
def cfg():
    return config.load("hrnet_small_128x96")


def _calib(cfg, out, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", select.CalibWarning)
        return calibset.ensure_calib(cfg, out_dir=out, progress=False, num=8, **kw)


@pytest.fixture(scope="module")
def train_set(cfg, tmp_path_factory):
    return provenance.describe(_calib(cfg, tmp_path_factory.mktemp("train") / "calib"))


def test_default_set_is_train_and_never_the_bundled_val_images(train_set, coco_train, coco_mini, mmpose_coco):
    assert train_set["set"] == "data/coco_train_mini/person_keypoints_train2017_subset.json"
    assert train_set["crops"] == 8 and 1 <= len(train_set["images"]) <= 8
    assert all((coco_train[1] / name).is_file() for name in train_set["images"])
    val = sorted(coco_mini[1].glob("*.jpg")) + sorted(mmpose_coco.glob("*.jpg"))
    assert provenance.seen(train_set, val) == []


def test_seen_compares_content_not_names(cfg, train_set, coco_train, tmp_path):
    name = sorted(train_set["images"])[0]
    renamed = tmp_path / "elsewhere.jpg"
    shutil.copy(coco_train[1] / name, renamed)
    other = sorted(set(p.name for p in coco_train[1].glob("*.jpg")) - set(train_set["images"]))[0]
    assert provenance.seen(train_set, [renamed, coco_train[1] / other]) == [renamed]
    assert provenance.seen(None, [renamed]) is None   # a build without the record: cannot tell
    # an annotation file whose images are not beside it: those images were not seen (was a FileNotFoundError)
    assert provenance.seen(train_set, [tmp_path / "absent.jpg", renamed]) == [renamed]


def test_dir_set_and_an_lmdb_without_manifest(cfg, coco_mini, tmp_path):
    folder = tmp_path / "persons"
    folder.mkdir()
    for f in sorted(coco_mini[1].glob("*.jpg"))[:3]:
        shutil.copy(f, folder / f.name)
    lm = _calib(cfg, tmp_path / "calib", spec=f"dir:{folder}")
    d = provenance.describe(lm)
    assert d["set"] == str(folder) and sorted(d["images"]) == sorted(p.name for p in folder.iterdir())
    shutil.copytree(lm, tmp_path / "bare.lmdb")   # someone's LMDB: no bmpose manifest beside it
    bare = provenance.describe(tmp_path / "bare.lmdb")
    assert bare["images"] is None and bare["crops"] == store.read_meta(lm)["count"] == 3


def _int8(record, bmodel="x/bm1684x_int8_b1/m.bmodel"):
    return {"label": "bm1684x_int8_b1", "precision": "int8", "bmodel": bmodel, "calibration": record}


def test_eval_refuses_an_int8_build_on_its_own_calibration_images(cfg, coco_mini, tmp_path, capsys):
    val_calibrated = provenance.describe(_calib(cfg, tmp_path / "calib", coco_ann=coco_mini[0], coco_img=coco_mini[1]))
    gt = boxes.gt_boxes(*coco_mini)
    fp32 = {"label": "onnx_fp32", "precision": "fp32"}
    with pytest.raises(BmposeError, match=r"m\.bmodel: \d of the 22 evaluation images also calibrated it "
                                          r"\(data/coco_val_mini/.*--allow-calib-overlap") as e:
        eval_run._check_calibration(SimpleNamespace(allow_calib_overlap=False), [fp32, _int8(val_calibrated)], gt)
    assert "\n" not in str(e.value)
    arts = [fp32, _int8(val_calibrated)]
    eval_run._check_calibration(SimpleNamespace(allow_calib_overlap=True), arts, gt)
    assert "eval: warning:" in capsys.readouterr().err
    assert sorted(Path(f).name for f in arts[1]["calibration"]["seen"]) == sorted(
        {Path(b.file).name for b in gt} & set(val_calibrated["images"]))
    assert "calibration" not in arts[0]


def test_eval_scores_train_calibrated_and_unknown_builds(train_set, coco_mini):
    gt = boxes.gt_boxes(*coco_mini)
    arts = [_int8(train_set), _int8(None)]
    eval_run._check_calibration(SimpleNamespace(allow_calib_overlap=False), arts, gt)
    assert arts[0]["calibration"] == {"set": train_set["set"], "seen": []}
    assert arts[1]["calibration"] == {"set": None, "seen": None}
