#!/usr/bin/env bash
# Debian's chromium for the report's browser test (tests/report/test_report.py), when it is missing: apt-get as root,
# or through passwordless sudo. Exit 0 with chromium on PATH; otherwise exit 2 with one line saying why (the
# test then skips with that line). About 15 s and 300 MB on Debian 12 with the package lists in place.
set -uo pipefail
if command -v chromium >/dev/null 2>&1; then echo "chromium: $(command -v chromium)"; exit 0; fi
command -v apt-get >/dev/null 2>&1 || { echo "install_chromium: no apt-get here (Debian's chromium package)"; exit 2; }
if [[ $(id -u) == 0 ]]; then
  AS_ROOT=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  AS_ROOT=(sudo -n)
else
  echo "install_chromium: apt-get needs root, and there is no passwordless sudo"; exit 2
fi
LOG=$(mktemp -t install_chromium.XXXXXX.log)
install() { DEBIAN_FRONTEND=noninteractive "${AS_ROOT[@]}" apt-get install -y --no-install-recommends chromium; }
if ! install >"$LOG" 2>&1; then   # stale or missing package lists: refresh them once
  "${AS_ROOT[@]}" apt-get update >>"$LOG" 2>&1
  install >>"$LOG" 2>&1 || { echo "install_chromium: apt-get install chromium failed: $(tail -n 1 "$LOG") (log $LOG)"; exit 2; }
fi
command -v chromium >/dev/null 2>&1 || { echo "install_chromium: installed, but no chromium on PATH (log $LOG)"; exit 2; }
rm -f "$LOG"
echo "chromium: $(command -v chromium)"
