"""The calibration crops as TPU-MLIR reads them: one normalised npz per crop plus a data list."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from bmpose import manifest
from bmpose.calib.store import check_lmdb, iter_records
from bmpose.pose import normalize


def write_tpu_inputs(lmdb_path, cfg, out_dir, num: int | None = None) -> list[Path]:
    """One npz per crop (key "input", normalised float32 [1,3,H,W]) in out_dir, plus `data_list.txt`.

    That is what run_calibration (--dataset DIR or --data_list FILE; it stacks batch-1 npz to the model's batch)
    and model_transform --test_input take. out_dir belongs to this function: it is replaced on a rebuild and
    reused (manifest) when the LMDB, num and normalisation are unchanged.
    """
    lmdb_path, out_dir = Path(lmdb_path), Path(out_dir)
    meta = check_lmdb(lmdb_path, cfg)
    n = meta["count"] if num is None else min(int(num), meta["count"])
    inputs = {"lmdb": lmdb_path}
    options = {"num": n, "mean": list(cfg.mean), "std": list(cfg.std), "network_rgb": cfg.bgr_to_rgb}
    with manifest.locked(out_dir):
        if manifest.up_to_date(out_dir, inputs, options):
            return [Path(p) for p in (out_dir / "data_list.txt").read_text().split()]
        names = []
        with manifest.atomic_dir(out_dir, keep_failed=False) as tmp:
            for i, rec in enumerate(iter_records(lmdb_path, limit=n)):
                x = normalize(rec.image, cfg.mean, cfg.std, network_rgb=cfg.bgr_to_rgb)
                name = f"calib_{i:05d}.npz"
                np.savez(tmp / name, input=x)
                names.append(name)
            (tmp / "data_list.txt").write_text("".join(f"{(out_dir / nm).resolve()}\n" for nm in names))
            manifest.write_manifest(tmp, stage="tpu_inputs", inputs=inputs, options=options,
                                    outputs=["data_list.txt"], checks={"count": len(names)})
    return [out_dir.resolve() / nm for nm in names]
