#!/usr/bin/env bash
# Creates .venv (Python 3.10, the only version TPU-MLIR supports) with every pin from constraints.txt.
# Idempotent: a stamp keyed on constraints.txt + this script's sha256 makes a second run take seconds.
# `scripts/setup.sh --find-python` only prints the Python 3.10 it would use (exit 2 when there is none).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
STAMP="$VENV/.bmpose-setup"
KEY=$(cat constraints.txt scripts/setup.sh pyproject.toml | sha256sum | cut -d' ' -f1)
FIND_ONLY=$([[ "${1:-}" == "--find-python" ]] && echo 1 || echo 0)
if [[ $FIND_ONLY == 0 && -f "$STAMP" && "$(cat "$STAMP")" == "$KEY" ]]; then
  echo "setup: $VENV is up to date"; exit 0
fi

is_py310() {  # runs, is 3.10, and can make a venv (Debian splits venv/ensurepip into python3.10-venv)
  "$1" -c 'import sys, venv, ensurepip; assert sys.version_info[:2] == (3, 10)' >/dev/null 2>&1
}
find_python310() {
  # Honour an explicit choice first; then a python3.10 that actually runs (the pyenv shim refuses while
  # pyenv's global version is 3.11, so "exists on PATH" is not enough); then pyenv's own install.
  if [[ -n "${BMPOSE_PYTHON:-}" ]]; then echo "$BMPOSE_PYTHON"; return; fi
  if command -v python3.10 >/dev/null 2>&1 && is_py310 python3.10; then
    command -v python3.10; return
  fi
  if command -v pyenv >/dev/null 2>&1; then
    local p
    for p in "$(pyenv root)"/versions/3.10.*/bin/python3.10; do
      [[ -x "$p" ]] && is_py310 "$p" && { echo "$p"; return; }
    done
  fi
  return 1
}
PY=$(find_python310) || {
  echo "setup: error: Python 3.10 not found (TPU-MLIR 1.30.2 supports only 3.10); install it, e.g. 'pyenv install 3.10' or 'apt-get install python3.10-venv', or set BMPOSE_PYTHON=/path/to/python3.10" >&2
  exit 2
}
is_py310 "$PY" || {
  echo "setup: error: BMPOSE_PYTHON=$PY is not a working Python 3.10 with venv (TPU-MLIR 1.30.2 supports only 3.10)" >&2
  exit 2; }
if [[ $FIND_ONLY == 1 ]]; then echo "$PY"; exit 0; fi

# Quiet: one line per phase with its time; everything the tools print goes to $VENV/setup.log, whose tail is
# shown only when a phase fails (pip's own "ERROR: ... dependency resolver" lines are expected, see below).
# A fresh venv needs about 11 GB at its peak, by estimate, not measured: 6.5 GB installed plus pip's downloaded
# wheels (torch's CUDA ones alone 4.4 GB). With less free, pip dies half-way with "No space left on device", so
# say it first, in one line.
need_gb=12
if [[ ! -x "$VENV/bin/python" ]]; then
  for dir in "$(dirname "$VENV")" "${TMPDIR:-/tmp}"; do
    free_gb=$(( $(df -Pk "$dir" | awk 'NR==2 {print $4}') / 1024 / 1024 ))
    if (( free_gb < need_gb )); then
      echo "setup: error: $free_gb GB free on $dir; a fresh $VENV needs about $need_gb GB there (free space, or set TMPDIR)" >&2
      exit 2
    fi
  done
fi
mkdir -p "$VENV"
LOG="$VENV/setup.log"
: > "$LOG"
phase() {
  local what=$1 t0=$SECONDS
  shift
  echo "== $what: $*" >> "$LOG"
  if "$@" >> "$LOG" 2>&1; then
    echo "setup: $what ($((SECONDS - t0)) s)"
  else
    echo "setup: error: $what failed; the end of $LOG:" >&2
    tail -n 15 "$LOG" >&2
    exit 1
  fi
}
[[ -x "$VENV/bin/python" ]] || phase "venv with $PY" "$PY" -m venv "$VENV"
"$VENV/bin/python" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null || {
  echo "setup: error: $VENV exists but is not a Python 3.10 venv; remove it and run setup again" >&2; exit 2; }
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check -c constraints.txt)

# 1. TPU-MLIR with the ONNX front end, plus what its wheel forgets (psutil; torch, which it imports;
#    setuptools<81, because it imports pkg_resources). torch comes from PyPI at tpu_mlir's own pin. jinja2
#    renders the report's HTML (torch also needs it; named here since bmpose imports it itself).
phase "TPU-MLIR, torch" "${PIP[@]}" "tpu_mlir[onnx]" torch psutil setuptools pytest jinja2

# 2. mmpose stack with --no-deps: mmengine/mmcv-lite/mmpose ask for the GUI opencv-python (which breaks
#    cv2 under TPU-MLIR's LD_LIBRARY_PATH, see tests/test_environment.py), mmpose asks for chumpy (does not
#    build) and torchvision (would pull a second torch). Their real runtime deps are listed by hand.
phase "mmpose (--no-deps)" "${PIP[@]}" --no-deps mmengine mmcv-lite mmpose mmdet
phase "mmpose's runtime dependencies" "${PIP[@]}" addict yapf termcolor rich pyyaml matplotlib json_tricks \
  munkres xtcocotools shapely terminaltables lmdb tqdm six
phase "Ray (bmpose eval --ray)" "${PIP[@]}" ray
phase "bmpose (editable)" "${PIP[@]}" --no-deps -e .

# 3. TPU-MLIR bundles Ubuntu 22.04's glibc (libc.so.6, libm.so.6, libpthread.so.0) in lib/third_party and
#    puts that folder on LD_LIBRARY_PATH. On any newer system (Debian 12 here) the mix of the system loader and
#    the old libc crashes every tool ("GLIBC_2.36 not found", stack smashing). The system glibc is newer and
#    backwards compatible, so the copies are moved aside (kept, renamed, so this is reversible and idempotent).
TP=$("$VENV/bin/python" -W ignore -c 'import os, tpu_mlir; print(os.path.join(os.path.dirname(tpu_mlir.__file__), "lib", "third_party"))')
for lib in libc.so.6 libm.so.6 libpthread.so.0; do
  [[ -e "$TP/$lib" ]] && mv -f "$TP/$lib" "$TP/$lib.bundled-disabled"
done

# 4. Never the GUI OpenCV (see above): fail here, loudly, if anything pulled it in.
if "$VENV/bin/python" -m pip show opencv-python >/dev/null 2>&1; then
  echo "setup: error: opencv-python (GUI build) got installed; only opencv-python-headless may be present" >&2
  exit 1
fi
# 5. Byte-compile the venv once. Where PYTHONDONTWRITEBYTECODE is set (it is on this project's machines), Python
#    never caches .pyc itself and every process - each TPU-MLIR tool, each bmpose command - compiles its
#    imports from source again: measured 0.65 s per `bmpose build` and about 1 s per model_deploy.py run.
compile_venv() { "$VENV/bin/python" -m compileall -q -j 0 "$VENV/lib" || true; }  # a stray py2 file: no reason to fail
phase "byte-compile" compile_venv
echo "$KEY" > "$STAMP"
echo "setup: note: pip reports mmengine, mmcv-lite and mmpose's requirements opencv-python, chumpy and torchvision as"
echo "setup:   not installed, on purpose (docs/setup.md): they break TPU-MLIR or do not build. Full log: $LOG"
echo "setup: $VENV ready"
