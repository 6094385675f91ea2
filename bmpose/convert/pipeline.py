"""The chain every build runs, in one place: calibration LMDB -> TPU-MLIR crops -> ONNX -> top MLIR ->
calibration table -> bmodel. `bmpose build`, the calibration study, the fragility sweep and bench all ask a
Pipeline instead of chaining the stages by hand (where each stage writes: bmpose.layout); each stage is still built (or reused through its manifest) by its own
`ensure_*`, and a Pipeline remembers what it has ensured, so asking twice costs nothing.
"""
from __future__ import annotations

from pathlib import Path


class Pipeline:
    def __init__(self, cfg, checkpoint: str | None = None, calib: str = "coco", *, coco_ann=None, coco_img=None,
                 num: int | None = None, progress: bool = False, verbose: bool = True):
        """`num`: the calibration persons (None: the config's); `verbose`: the export's progress lines."""
        self.cfg, self.checkpoint, self.calib = cfg, checkpoint, calib
        self.coco_ann, self.coco_img, self.num = coco_ann, coco_img, num
        self.progress, self.verbose = progress, verbose
        self._lmdb: Path | None = None
        self._crops: list[Path] | None = None
        self._onnx: dict = {}
        self._mlir: dict = {}

    def lmdb(self) -> Path:
        """The calibration LMDB (bmpose.calib)."""
        if self._lmdb is None:
            from bmpose.calib.calibset import ensure_calib

            self._lmdb = ensure_calib(self.cfg, self.calib, coco_ann=self.coco_ann, coco_img=self.coco_img,
                                      num=self.num, progress=self.progress)
        return self._lmdb

    def crops(self) -> list[Path]:
        """The calibration crops as TPU-MLIR inputs: the transforms' test input and run_calibration's data."""
        if self._crops is None:
            from bmpose.convert import steps

            self._crops = steps.ensure_cali_inputs(self.cfg, self.lmdb(), self.num)
        return self._crops

    def onnx(self, *batches: int) -> dict:
        """{batch: ONNX path} for these static batches (exported together when any is missing)."""
        missing = tuple(b for b in batches if b not in self._onnx)
        if missing:
            from bmpose.convert.export import ensure_onnx

            self._onnx.update(ensure_onnx(self.cfg, self.checkpoint, batches=missing, verbose=self.verbose))
        return {b: self._onnx[b] for b in batches}

    def mlir(self, batch: int) -> Path:
        """The top MLIR folder of `batch` (model_transform with real crops as its test input)."""
        if batch not in self._mlir:
            from bmpose.convert import steps

            self._mlir[batch] = steps.ensure_transform(self.cfg, batch, self.onnx(batch)[batch], self.crops(),
                                                       self.checkpoint)
        return self._mlir[batch]

    def cali_table(self, method: str, crops: list[Path] | None = None, out: Path | None = None, *, tools=(),
                   chip: str | None = None, qtables=()) -> Path:
        """run_calibration on the batch-1 MLIR with `method`, over all crops (or a subset: `crops`, `out`);
        `tools` (convert.cali_tools) measure on `chip` with the build's float layers (its `qtables` and the
        automatic tail) float."""
        from bmpose.convert import steps

        crops = self.crops() if crops is None else crops
        num = len(crops) if out is not None else self.num_used()
        return steps.ensure_cali_table(self.cfg, self.mlir(1), crops, method, num, out=out, tools=tools, chip=chip,
                                       qtables=qtables)

    def bmodel(self, chip: str, precision: str, batch: int, spec, *, cali_table: Path | None = None,
               user_qtables=(), searched: Path | None = None, out: Path | None = None,
               auto_tail: bool = True) -> tuple[Path, bool]:
        """A bmodel built (or reused) from this batch's top MLIR; `spec` (bmodel_build.DeploySpec) says what it
        is. -> (its folder, built now?)"""
        from bmpose.calib.provenance import describe
        from bmpose.convert import bmodel_build

        calibration = describe(self.lmdb()) if precision == "int8" else None
        return bmodel_build.ensure_bmodel(self.cfg, chip, precision, batch, mlir=self.mlir(batch), spec=spec,
                                          cali_table=cali_table, user_qtables=user_qtables, searched=searched,
                                          out=out, auto_tail=auto_tail, calibration=calibration)

    def num_used(self) -> int:
        """The calibration count that names the table's folder (cali_table/<method>_n<num>)."""
        return int(self.num if self.num is not None else self.cfg.calibration.get("num", 100))
