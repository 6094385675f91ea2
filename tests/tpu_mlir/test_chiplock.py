"""bmpose.tpu_mlir.chiplock: simulator runs of one chip share the lock, another chip waits, and a run killed with
SIGKILL (the case that left TPU-MLIR's own counter stuck and hung every later build) frees it."""
import os
import signal
import subprocess
import sys
import threading
import time

from bmpose.tpu_mlir import chiplock

HOLD = "import sys, time\nfrom bmpose.tpu_mlir.chiplock import chip_lock\nwith chip_lock(sys.argv[1]):\n" \
       "    print('held', flush=True)\n    time.sleep(120)\n"


def _acquired_within(chip: str, seconds: float) -> bool:
    done = threading.Event()

    def take():
        with chiplock.chip_lock(chip, poll=0.05):
            done.set()

    threading.Thread(target=take, daemon=True).start()
    return done.wait(seconds)


def test_other_chip_waits_until_the_holder_dies(tmp_path, monkeypatch):
    monkeypatch.setattr(chiplock, "LOCK_DIR", tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, "BM1684X"], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "TMPDIR": str(tmp_path)})
    try:
        assert holder.stdout.readline().strip() == "held"
        assert _acquired_within("BM1684X", 2)          # same chip: shared
        waiting = threading.Event()

        def other():
            with chiplock.chip_lock("BM1684", poll=0.05):
                waiting.set()

        threading.Thread(target=other, daemon=True).start()
        assert not waiting.wait(1.5)                    # other chip: waits
        holder.send_signal(signal.SIGKILL)              # no cleanup runs in the holder
        holder.wait()
        t0 = time.monotonic()
        assert waiting.wait(5), "the killed holder's lock was not released"
        assert time.monotonic() - t0 < 5
    finally:
        holder.kill()
