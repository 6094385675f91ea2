"""bmpose.manifest: skip-if-unchanged, rebuild on any change, atomic outputs, `.failed` on error (nothing on an
interrupt), build lock."""
import json
import os
import stat
import threading
import time

import pytest

from bmpose import manifest
from bmpose.manifest import atomic_dir, atomic_file, locked, read_manifest, up_to_date, write_manifest


@pytest.fixture
def stage(tmp_path):
    """A toy stage: one input file, one option, one output file."""
    src = tmp_path / "input.txt"
    src.write_text("weights v1")
    out = tmp_path / "out"

    def build(options=None):
        options = options or {"batch": 1}
        with atomic_dir(out) as tmp:
            (tmp / "result.bin").write_text(src.read_text().upper())
            write_manifest(tmp, stage="toy", inputs={"src": src}, options=options, outputs=["result.bin"],
                           checks={"ok": True})
        return options

    return src, out, build


def test_same_inputs_are_up_to_date(stage):
    src, out, build = stage
    assert not up_to_date(out, {"src": src}, {"batch": 1})
    build()
    assert up_to_date(out, {"src": src}, {"batch": 1})
    m = read_manifest(out)
    assert m["status"] == "ok" and m["inputs"]["src"]["sha256"] == manifest.sha256_file(src)
    assert m["tools"]["torch"] and m["outputs"]["result.bin"] == manifest.sha256_file(out / "result.bin")


def test_changed_input_content_rebuilds(stage):
    src, out, build = stage
    build()
    src.write_text("weights v2")
    assert not up_to_date(out, {"src": src}, {"batch": 1})


def test_changed_options_or_missing_output_or_tools_rebuild(stage, monkeypatch):
    src, out, build = stage
    build()
    assert not up_to_date(out, {"src": src}, {"batch": 4})
    monkeypatch.setattr(manifest, "tool_versions", lambda: {"torch": "0.0"})
    assert not up_to_date(out, {"src": src}, {"batch": 1})
    monkeypatch.undo()
    (out / "result.bin").unlink()
    assert not up_to_date(out, {"src": src}, {"batch": 1})


@pytest.mark.parametrize("damage", ["truncate", "same_size_edit"])
def test_an_output_that_is_not_the_recorded_bytes_is_not_up_to_date(stage, damage):
    """A truncated bmodel or ONNX (e.g. `truncate -s 1000000`, a copy cut short) is rebuilt, not shipped: the
    output's content hash is checked against the manifest, by up_to_date and by the cheap deep check alike."""
    from bmpose.convert.steps import deep_fresh

    src, out, build = stage
    build()
    assert up_to_date(out, {"src": src}, {"batch": 1}) and deep_fresh(out)
    f = out / "result.bin"
    if damage == "truncate":
        os.truncate(f, 3)
    else:
        f.write_text(f.read_text().lower())
    assert not up_to_date(out, {"src": src}, {"batch": 1})
    assert not deep_fresh(out)


def test_missing_input_is_not_up_to_date(stage):
    src, out, build = stage
    build()
    src.unlink()
    assert not up_to_date(out, {"src": src}, {"batch": 1})


def test_failed_build_is_kept_as_dot_failed_and_old_output_survives(stage):
    src, out, build = stage
    build()
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_dir(out) as tmp:
            (tmp / "log.txt").write_text("what happened")
            raise RuntimeError("boom")
    failed = out.with_name("out.failed")
    assert (failed / "log.txt").read_text() == "what happened"
    assert (out / "result.bin").read_text() == "WEIGHTS V1"  # the previous good build is untouched
    assert up_to_date(out, {"src": src}, {"batch": 1})
    build()  # a later success clears the failure and leaves no temporary dirs behind
    assert not failed.exists()
    assert sorted(p.name for p in out.parent.iterdir()) == ["input.txt", "out"]


def test_failed_first_build_leaves_no_final_dir(tmp_path):
    out = tmp_path / "never"
    with pytest.raises(ValueError):
        with atomic_dir(out):
            raise ValueError
    assert not out.exists() and (tmp_path / "never.failed").is_dir()


def test_interrupted_build_leaves_nothing_and_old_output_survives(stage):
    """An interrupt (Ctrl-C; the CLI turns SIGTERM into the same) is no failure to read: the temporary dir
    goes, no `.failed` appears, and the previous good build is still the up-to-date one."""
    src, out, build = stage
    build()
    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(out) as tmp:
            (tmp / "half.bin").write_text("half")
            raise KeyboardInterrupt
    assert sorted(p.name for p in out.parent.iterdir()) == ["input.txt", "out"]
    assert (out / "result.bin").read_text() == "WEIGHTS V1" and up_to_date(out, {"src": src}, {"batch": 1})


def test_atomic_file_keeps_old_content_on_error(tmp_path):
    target = tmp_path / "a.json"
    target.write_text("old")
    with pytest.raises(KeyError):
        with atomic_file(target) as tmp:
            tmp.write_text("half written")
            raise KeyError
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["a.json"]
    with atomic_file(target) as tmp:
        tmp.write_text(json.dumps({"new": 1}))
    assert json.loads(target.read_text()) == {"new": 1}


def test_atomic_outputs_get_normal_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_file(tmp_path / "f") as tmp:
            tmp.write_text("x")
        with atomic_dir(tmp_path / "d"):
            pass
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755


def test_locked_serialises_builders(tmp_path):
    events = []

    def builder(name):
        with locked(tmp_path / "out"):
            events.append(f"{name} start")
            time.sleep(0.2)
            events.append(f"{name} end")

    threads = [threading.Thread(target=builder, args=(n,)) for n in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [e.split()[1] for e in events] == ["start", "end", "start", "end"]


def test_the_unset_kernel_mode_word_is_blanked_whatever_its_sign():
    """TPU-MLIR 1.30.2 leaves a bmodel's empty kernel module's `mode` uninitialised: an int32 of any sign
    (seen: 12656, 650051760, -52382799). Both prints hash alike once blanked."""
    from bmpose.manifest import _EMPTY_KERNEL_MODE

    def printed(mode):
        return ('kernel_module: {\n    file_name: "",\n    binary: {\n      start: 0,\n      size: 0\n    },\n'
                f'    mode: {mode}\n  }}')

    blank = [_EMPTY_KERNEL_MODE.sub(r"\g<1>0", printed(m)) for m in (53, 650051760, -52382799)]
    assert blank[0] == blank[1] == blank[2] and "mode: 0\n" in blank[0]


def test_a_full_disk_leaves_no_failed_copy_behind(tmp_path):
    """A stage that fills the disk is not kept as `<dir>.failed/` (which would keep the disk full); another
    failure is kept, for its logs."""
    import errno

    out = tmp_path / "stage"
    with pytest.raises(OSError):
        with atomic_dir(out) as tmp:
            (tmp / "half.bin").write_bytes(b"x" * 100)
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp / "half.bin"))
    assert not out.exists() and not out.with_name("stage.failed").exists()
    assert [p.name for p in tmp_path.iterdir()] == []


def test_an_lmdb_opened_with_locking_is_still_the_same_content(tmp_path):
    """The vendor's ufwio opens an LMDB with locking, which writes lock.mdb beside data.mdb: a reader's table,
    not content, so the folder's hash (and the stage that recorded it) stays the same."""
    db = tmp_path / "x.lmdb"
    db.mkdir()
    (db / "data.mdb").write_bytes(b"records")
    before = manifest.sha256_file(db)
    (db / "lock.mdb").write_bytes(b"reader table")
    os.utime(db, ns=(1, 1))
    assert manifest.sha256_file(db) == before
    (db / "data.mdb").write_bytes(b"other records")
    os.utime(db, ns=(2, 2))   # the hash cache is keyed on the folder's own size and time
    assert manifest.sha256_file(db) != before


def test_a_read_only_tree_still_serves_what_is_up_to_date(stage, monkeypatch):
    """A read-only artifacts folder (a shared, mounted build): the lock file cannot be made, yet an up-to-date
    stage is reused; a stage that must be built fails on its first write, an OSError (one line in the CLI)."""
    import builtins
    import errno

    src, out, build = stage
    build()

    def read_only(path, mode="r", *a, **kw):
        if "w" in mode and str(path).endswith(".lock"):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return builtins.open(path, mode, *a, **kw)

    monkeypatch.setattr(manifest, "open", read_only, raising=False)
    with locked(out):
        assert up_to_date(out, {"src": src}, {"batch": 1})
    monkeypatch.setattr(manifest, "open", lambda *a, **kw: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")),
                        raising=False)
    with pytest.raises(OSError, match="I/O error"):   # any other failure is not taken for a read-only tree
        with locked(out):
            pass


def test_a_wait_for_another_build_is_said_and_counted_apart(tmp_path, capsys):
    """A second build of the same stage waited on the lock silently and reported the wait as its build time."""
    import threading
    import time

    from bmpose import manifest

    out = tmp_path / "stage"
    inside, release = threading.Event(), threading.Event()

    def other_build():
        with manifest.locked(out):
            inside.set()
            release.wait(5)

    t = threading.Thread(target=other_build)
    t.start()
    inside.wait(5)
    threading.Timer(0.5, release.set).start()
    before = manifest.LOCK_WAIT[0]
    with manifest.locked(out):
        pass
    t.join()
    assert manifest.waited_since(before) >= 0.4
    assert f"waiting for another process that builds {out}" in capsys.readouterr().err
    before = manifest.LOCK_WAIT[0]
    with manifest.locked(out):   # free: no wait, no line
        pass
    assert manifest.waited_since(before) == 0 and capsys.readouterr().err == ""
