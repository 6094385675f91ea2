"""MediaPipe BlazePose's landmark tflite -> the ONNX bmpose ships (configs/blazepose/), checked against the tflite.

Runs inside the throwaway venv that scripts/blazepose/make_onnx.sh makes (tensorflow-cpu and tf2onnx never enter
.venv); reads the unpacked npm package `@mediapipe/pose`. Steps:
  1. the tflite's sha256 against the one pinned here (what the note in configs/blazepose/README.md records);
  2. tf2onnx --opset 13 --inputs-as-nchw: the input becomes NCHW [1, 3, 256, 256] (RGB, 0-1), like every model
     bmpose feeds; the five outputs are kept as they are (the yaml says which one bmpose reads);
  3. Reshapes that bake in the tflite's batch of 1 get -1 there, so the import can make batch-4 files;
  4. tensor and node names canonicalised: tf2onnx numbers the constants it folds in an order that changes from
     run to run (two runs, two sha256), and writes the tflite's path into the graph, so the same tflite would
     not give the same bytes; after this it does;
  5. ONNX Runtime against the tflite interpreter on real person crops (the bundled COCO val persons, cropped by
     bmpose's own crop), every output, batch 1 and 4.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from bmpose.pose.crop import crop_people  # noqa: E402  (the core: numpy + cv2 only)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")   # TensorFlow's start-up chatter

PACKAGE = "@mediapipe/pose@0.5.1675469404"
TFLITE_SHA256 = {
    "lite": "f17bfbecadb61c3be1baa8b8d851cc6619c870a87167b32848ad20db306b9d61",
    "full": "e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f",
    "heavy": "59e42d71bcd44cbdbabc419f0ff76686595fd265419566bd4009ef703ea8e1fe",
}
VAL = ROOT / "data" / "coco_val_mini"
TOLERANCE = 0.05   # |ONNX Runtime - tflite| on the landmark output, in input pixels of 256: measured 0.011 (float32
                   # sums in another order, XNNPACK vs ONNX Runtime), margin 4.5x


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tf2onnx(tflite: Path, out: Path) -> None:
    env = {**os.environ, "PYTHONHASHSEED": "0", "TF_CPP_MIN_LOG_LEVEL": "3"}
    subprocess.run([sys.executable, "-m", "tf2onnx.convert", "--tflite", str(tflite), "--opset", "13",
                    "--inputs-as-nchw", "input_1", "--output", str(out)], check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def batch_free_reshapes(model) -> int:
    """Reshape targets starting with the tflite's batch of 1 -> -1 (the graph's only batch-bound constants)."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    users = defaultdict(list)
    for n in model.graph.node:
        for i in n.input:
            users[i].append(n.op_type)
    changed = 0
    for n in model.graph.node:
        if n.op_type != "Reshape" or n.input[1] not in inits:
            continue
        shape = numpy_helper.to_array(inits[n.input[1]])
        if set(users[n.input[1]]) == {"Reshape"} and shape.size and shape[0] == 1:
            shape = shape.copy()
            shape[0] = -1
            inits[n.input[1]].CopyFrom(numpy_helper.from_array(shape, n.input[1]))
            changed += 1
    return changed


def _clean(name: str) -> str:
    return re.sub(r"__\d+", "", name)


def canonical(model):
    """Same graph, names that do not depend on tf2onnx's run: nodes in a topological order broken by their TF
    names, generated counters (`__123`) dropped, clashes numbered in that order, initializers sorted."""
    import onnx

    g = model.graph
    nodes = list(g.node)
    keep = {o.name for o in g.output} | {i.name for i in g.input}
    inits = {i.name for i in g.initializer}
    producer = {o: k for k, n in enumerate(nodes) for o in n.output}
    consumers, indeg = defaultdict(set), {}
    for k, n in enumerate(nodes):
        deps = {producer[i] for i in n.input if i in producer}
        indeg[k] = len(deps)
        for d in deps:
            consumers[d].add(k)
    rename, taken = {}, set()

    def fresh(base: str) -> str:
        # clashes numbered _2, _3, ... (not `#`, which starts a comment in qtable files, bmpose's and TPU-MLIR's)
        name, n = base, 1
        while name in taken:
            n += 1
            name = f"{base}_{n}"
        taken.add(name)
        return name

    def key(k: int):
        n = nodes[k]
        return _clean(n.name), n.op_type, tuple(rename.get(i, _clean(i)) for i in n.input)

    ready, order = sorted((k for k in indeg if indeg[k] == 0), key=key), []
    while ready:
        k = ready.pop(0)
        n = nodes[k]
        order.append(k)
        for j, i in enumerate(n.input):
            if i in inits and i not in rename:
                rename[i] = fresh(f"{_clean(n.name)}:in{j}")
        for o in n.output:
            if o not in keep:
                rename[o] = fresh(_clean(o))
        n.name = fresh(_clean(n.name))
        for c in consumers[k]:
            indeg[c] -= 1
            if indeg[c] == 0:
                ready.append(c)
        ready.sort(key=key)
    out = []
    for k in order:
        n = onnx.NodeProto()
        n.CopyFrom(nodes[k])
        n.input[:] = [rename.get(i, i) for i in n.input]
        n.output[:] = [rename.get(o, o) for o in n.output]
        out.append(n)
    del g.node[:]
    g.node.extend(out)
    tensors = []
    for i in g.initializer:
        t = onnx.TensorProto()
        t.CopyFrom(i)
        t.name = rename[i.name]
        tensors.append(t)
    del g.initializer[:]
    g.initializer.extend(sorted(tensors, key=lambda t: t.name))
    del g.value_info[:]
    g.doc_string = re.sub(r"converted from .*/", "converted from ", g.doc_string)   # not the temp folder's path
    return model


def real_crops(limit: int = 16) -> np.ndarray:
    """The first `limit` bundled val persons, square crops 256x256 (1.25x the box), RGB 0-1, NHWC."""
    import cv2

    data = json.loads((VAL / "person_keypoints_val2017_subset.json").read_text())
    files = {im["id"]: VAL / "images" / im["file_name"] for im in data["images"]}
    crops = []
    for a in data["annotations"]:
        if a.get("iscrowd") or not a.get("num_keypoints"):
            continue
        image = cv2.imread(str(files[a["image_id"]]))
        crops.append(crop_people(image, [a["bbox"]], (256, 256))[0].image)
        if len(crops) == limit:
            break
    return np.stack(crops).astype(np.float32) / 255.0


def compare(tflite: Path, onnx_path: Path, crops: np.ndarray) -> dict:
    """max |ONNX Runtime - tflite| per output, one crop at a time and as one batch of 4 (a batch-4 copy)."""
    import warnings

    import onnx
    import onnxruntime as ort
    import tensorflow as tf

    warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
    interp = tf.lite.Interpreter(model_path=str(tflite))
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]["index"]
    outs = {d["name"]: d["index"] for d in interp.get_output_details()}
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    m = onnx.load(str(onnx_path))
    for vi in (*m.graph.input, *m.graph.output):
        vi.type.tensor_type.shape.dim[0].dim_value = 4
    sess4 = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    worst = {n: 0.0 for n in names}
    for start in range(0, len(crops) - 3, 4):
        nhwc = crops[start:start + 4]
        got4 = sess4.run(None, {"input_1": np.ascontiguousarray(nhwc.transpose(0, 3, 1, 2))})
        for b in range(4):
            interp.set_tensor(inp, nhwc[b:b + 1])
            interp.invoke()
            got1 = sess.run(None, {"input_1": np.ascontiguousarray(nhwc[b:b + 1].transpose(0, 3, 1, 2))})
            for j, n in enumerate(names):
                ref = interp.get_tensor(outs[_tflite_name(n, outs)])
                for got in (got1[j], got4[j][b:b + 1]):
                    worst[n] = max(worst[n], float(np.abs(got.reshape(ref.shape) - ref).max()))
    return worst


def _tflite_name(onnx_name: str, outs: dict) -> str:
    """tf2onnx names the outputs Identity, Identity_1, ... in the tflite's output order."""
    order = list(outs)
    i = 0 if onnx_name == "Identity" else int(onnx_name.split("_")[1])
    return order[i]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--package", type=Path, required=True, help="the unpacked npm package folder")
    ap.add_argument("--variant", default="lite", choices=sorted(TFLITE_SHA256))
    ap.add_argument("--out", type=Path, default=ROOT / "configs" / "blazepose")
    args = ap.parse_args(argv)
    import onnx

    tflite = args.package / f"pose_landmark_{args.variant}.tflite"
    got = sha256(tflite)
    if got != TFLITE_SHA256[args.variant]:
        sys.exit(f"{tflite}: sha256 {got}, expected {TFLITE_SHA256[args.variant]} ({PACKAGE})")
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / f"pose_landmark_{args.variant}.onnx"
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.onnx"
        tf2onnx(tflite, raw)
        model = onnx.load(str(raw))
        reshapes = batch_free_reshapes(model)
        model = canonical(model)
        onnx.checker.check_model(model)
        part = Path(tmp) / target.name
        onnx.save(model, str(part))
        diffs = compare(tflite, part, real_crops())
        if diffs["Identity"] > TOLERANCE:
            sys.exit(f"{target.name}: landmarks differ from the tflite by {diffs['Identity']:.3g} px > {TOLERANCE}")
        os.replace(part, target)
    import tensorflow as tf
    import tf2onnx as t2o

    record = {"package": PACKAGE, "tflite": tflite.name, "tflite_sha256": got, "onnx": target.name,
              "onnx_sha256": sha256(target), "tf2onnx": t2o.__version__, "tensorflow": tf.__version__,
              "onnx_package": onnx.__version__, "opset": 13, "reshapes_made_batch_free": reshapes,
              "max_abs_diff_vs_tflite": diffs, "crops": "16 bundled COCO val persons, 1.25x square box crops"}
    (args.out / f"pose_landmark_{args.variant}.conversion.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"{target}: sha256 {record['onnx_sha256']}; max |ONNX Runtime - tflite| "
          + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
