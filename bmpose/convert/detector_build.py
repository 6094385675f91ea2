"""A person detector's bmodels, built by the pose models' own stages (convert.steps, convert.bmodel_build):

  calibration frames (whole COCO frames, letterboxed and scaled by the function inference uses)
  -> top MLIR (its ONNX, batch 1) -> calibration table (INT8) -> bmodel per chip and precision

under artifacts/<detector>/ (bmpose.layout names the folders), each with its manifest, compare files and
simulated device time. Whether its boxes still find the persons is measured above this floor
(bmpose.evaluate.detector_boxes), against the same detector on ONNX Runtime.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from bmpose import manifest
from bmpose.errors import BmposeError
from bmpose.pose.image_io import read_image
from bmpose.pose.detect import frame_input


def default_frames() -> list[Path]:
    """The bundled calibration frames: the 80 COCO train2017 images of data/coco_train_mini (28, persons
    in each) and data/coco_train_frames (52, 44 of them without a person), never evaluated on."""
    from bmpose.calib.select import default_coco
    from bmpose.config import DATA_DIR

    return [default_coco()[1], DATA_DIR / "coco_train_frames" / "images"]


def list_frames(folders) -> list[Path]:
    """The images of a folder, or of several in turn."""
    from bmpose.device.inputs import list_images

    folders = [folders] if isinstance(folders, (str, Path)) else list(folders)
    return [Path(f) for folder in folders for f in list_images(folder)]


def ensure_frames(dcfg, folder: Path | list[Path] | None = None, num: int | None = None) -> list[Path]:
    """Up to `num` frames of `folder` (default: default_frames) as the detector's input tensors (npz keyed by its
    input name), the transform's test input and run_calibration's data; reused while the images and
    preprocessing are unchanged."""
    folders = [Path(f) for f in ([folder] if isinstance(folder, (str, Path)) else folder or default_frames())]
    files = list_frames(folders)[: int(num or dcfg.calibration["num"])]
    if not files:
        raise BmposeError(f"{', '.join(map(str, folders))}: no images to calibrate the detector on")
    out = dcfg.layout.cali_inputs()
    key = dcfg.input_name
    inputs = {f"frame{i}": f for i, f in enumerate(files)}
    options = {"preprocess": {k: v for k, v in dcfg.summary().items() if k not in ("name", "onnx", "decoder",
                                                                                 "strides", "classes")},
               "key": key, "folders": [str(f) for f in folders]}
    with manifest.locked(out):
        if not manifest.up_to_date(out, inputs, options):
            with manifest.atomic_dir(out, keep_failed=False) as tmp:
                names = []
                for i, f in enumerate(files):
                    _, x = frame_input(read_image(f), dcfg)
                    names.append(f"frame_{i:05d}.npz")
                    np.savez(tmp / names[-1], **{key: x})
                (tmp / "data_list.txt").write_text("".join(f"{(out / n).resolve()}\n" for n in names))
                manifest.write_manifest(tmp, stage="detector_frames", inputs=inputs, options=options,
                                        outputs=["data_list.txt"], checks={"count": len(names)})
    return [Path(p) for p in (out / "data_list.txt").read_text().split()]


class DetectorBuild:
    """What a Pipeline is to a pose model, for a detector: its stages, each ensured once (batch 1 only)."""

    def __init__(self, dcfg, frames: Path | None = None, num: int | None = None):
        self.cfg, self.folder, self.num = dcfg, frames, num
        self._frames: list[Path] | None = None
        self._mlir: Path | None = None

    def frames(self) -> list[Path]:
        if self._frames is None:
            self._frames = ensure_frames(self.cfg, self.folder, self.num)
        return self._frames

    def mlir(self) -> Path:
        if self._mlir is None:
            from bmpose.convert import steps

            self._mlir = steps.ensure_transform(self.cfg, 1, self.cfg.onnx, self.frames())
        return self._mlir

    def spec(self, chip: str, precision: str, extra_qtables=()):
        """The bmodel_build.DeploySpec of one chip x precision (INT8: the float stem and `extra_qtables` float)."""
        from bmpose.convert.bmodel_build import INT8_LAYER_TOL_RANDOM, deploy_options

        if precision != "int8":
            return deploy_options(self.cfg, chip, precision, 1, method=None, user_qtables=(), search=False,
                                  checkpoint=None, calib=None)
        spec = deploy_options(self.cfg, chip, precision, 1, method=self.cfg.calibration["method"],
                              user_qtables=self.stem_qtable() + list(extra_qtables), search=False, checkpoint=None,
                              calib={"frames": [str(f) for f in ([self.folder] if self.folder else default_frames())],
                                     "num": len(self.frames())})
        # TPU-MLIR's per-layer floor (cos 0.7) would stop YOLOX-nano's INT8 build in the stem (a Mul at 0.66):
        # what decides a detector is whether its boxes still find the persons, the box gate above this floor.
        return dataclasses.replace(spec, tpu_layer_tolerance=INT8_LAYER_TOL_RANDOM)

    def stem_qtable(self) -> list[Path]:
        """INT8 keeps the first `int8_float_stem` ops of the top MLIR in FP32: YOLOX-nano's INT8 loss starts in
        its stem (docs/detection.md). -> [the qtable file] or []."""
        n = self.cfg.int8_float_stem
        if not n:
            return []
        from bmpose.convert.steps import transform_files
        from bmpose.tpu_mlir.mlirgraph import read_graph

        ops = read_graph(self.mlir() / transform_files(self.cfg)["mlir"]).ops[:n]
        path = self.cfg.artifacts / "qtable" / f"float_stem_{n}.txt"
        text = f"# the first {n} ops of the top MLIR stay FP32 (int8_float_stem)\n" + "".join(
            f"{op.name} F32\n" for op in ops)
        if not path.is_file() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            with manifest.atomic_file(path) as tmp:
                tmp.write_text(text)
        return [path]

    def cali_table(self, tools=(), chip: str | None = None) -> Path:
        """The INT8 calibration table of the config's method over every calibration frame; `tools`
        (convert.cali_tools) with the chip they measure on, the float layers of its build float meanwhile."""
        from bmpose.convert import steps

        return steps.ensure_cali_table(self.cfg, self.mlir(), self.frames(), self.cfg.calibration["method"],
                                       len(self.frames()), tools=tools, chip=chip,
                                       qtables=self.stem_qtable() if tools else ())

    def bmodel(self, chip: str, precision: str, extra_qtables=(), out: Path | None = None,
               tools=()) -> tuple[Path, bool]:
        """The build (or reuse) of one chip x precision; INT8 may keep `extra_qtables`' layers in float and be
        calibrated with `tools` too (then in another folder, `out`: --precision auto's trials)."""
        from bmpose.convert import bmodel_build

        table = self.cali_table(tools, chip) if precision == "int8" else None
        qtables = self.stem_qtable() + list(extra_qtables) if precision == "int8" else []
        spec = dataclasses.replace(self.spec(chip, precision, extra_qtables), cali_tools=tuple(tools))
        return bmodel_build.ensure_bmodel(self.cfg, chip, precision, 1, mlir=self.mlir(), spec=spec,
                                          cali_table=table, user_qtables=qtables, out=out)
