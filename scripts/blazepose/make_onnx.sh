#!/usr/bin/env bash
# MediaPipe BlazePose's landmark model -> configs/blazepose/pose_landmark_<variant>.onnx (`make blazepose-onnx`).
# Fetches the npm package, converts in a throwaway venv (tensorflow-cpu + tf2onnx stay out of .venv and the
# tests), checks against the tflite interpreter; scripts/blazepose/convert.py says what each step does.
# Usage: bash scripts/blazepose/make_onnx.sh [lite|full|heavy] [OUT_DIR]
set -euo pipefail
variant=${1:-lite}
repo=$(cd "$(dirname "$0")/../.." && pwd)
out=${2:-$repo/configs/blazepose}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python=$(ls -d "$HOME"/.pyenv/versions/3.11.*/bin/python 2>/dev/null | tail -1 || true)
python=${python:-python3}
echo "blazepose: npm pack @mediapipe/pose@0.5.1675469404"
(cd "$work" && npm pack --silent @mediapipe/pose@0.5.1675469404 >/dev/null && tar xzf mediapipe-pose-*.tgz)
echo "blazepose: throwaway venv ($("$python" --version)): tensorflow-cpu, tf2onnx (a few minutes)"
"$python" -m venv "$work/venv"
"$work/venv/bin/pip" install -q --disable-pip-version-check tensorflow-cpu==2.21.0 tf2onnx==1.17.0 onnx==1.23.2 \
  onnxruntime==1.32.0 numpy==2.4.6 opencv-python-headless==5.1.0.95 2>&1 | grep -v "^WARNING: Location" || true
echo "blazepose: converting pose_landmark_$variant.tflite"
TF_CPP_MIN_LOG_LEVEL=3 TF_ENABLE_ONEDNN_OPTS=0 "$work/venv/bin/python" "$repo/scripts/blazepose/convert.py" \
  --package "$work/package" --variant "$variant" --out "$out" 2> >(grep -v -E "^(INFO: Created|WARNING: All log)" >&2)
