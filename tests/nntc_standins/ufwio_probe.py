"""Run ufwio (the vendor's LMDB package) for tests/convert/test_nntc.py, inside the Python 3.8 venv that has it.

  ufwio_probe.py read  LMDB_DIR OUT.npz   # ufwio.lmdb_data -> keys + arrays
  ufwio_probe.py write IN.npz LMDB_DIR    # LMDB_Dataset.put(arr) per array, then close()
  ufwio_probe.py encode IN.npz OUT.npz    # array_to_datum(arr).SerializeToString() per array

Arrays travel as npz members a0000, a0001, ... (in order); keys as member "keys" (bytes).
Python 3.7+ syntax: this runs under the vendor's interpreter, not the build venv.
"""
import sys

import numpy as np
import ufwio
import ufwio.io


def load(npz):
    with np.load(npz) as f:
        return [f[name] for name in sorted(n for n in f.files if n.startswith("a"))]


def save(path, arrays, keys=None):
    members = {"a{:04d}".format(i): a for i, a in enumerate(arrays)}
    if keys is not None:
        members["keys"] = np.array(keys, dtype=object)
    np.savez(path, **members)


def main(cmd, src, dst):
    # ufwio swallows a failed `import lmdb/scipy/skimage` with a printed warning and then breaks later
    if not hasattr(ufwio.io, "lmdb"):
        sys.exit("ufwio imported without lmdb/scipy/skimage: its LMDB functions are disabled")
    if cmd == "read":
        keys, arrays = [], []
        for key, arr in ufwio.lmdb_data(src):
            keys.append(bytes(key))
            arrays.append(arr)
        save(dst, arrays, keys)
    elif cmd == "write":
        db = ufwio.LMDB_Dataset(dst, map_size=int(50e6))
        for arr in load(src):
            db.put(arr)
        db.close()
    elif cmd == "encode":
        blobs = [ufwio.io.array_to_datum(a).SerializeToString() for a in load(src)]
        np.savez(dst, blobs=np.array(blobs, dtype=object))
    else:
        sys.exit("unknown command {!r}".format(cmd))


if __name__ == "__main__":
    main(*sys.argv[1:])
