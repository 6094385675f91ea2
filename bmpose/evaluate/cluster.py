"""The shards of an evaluation (bmpose.evaluate.shards) as tasks of a Ray cluster: `bmpose eval --ray auto`
(the cluster this machine belongs to, `ray start --head` / `ray start --address=...`), `--ray ADDRESS`, or
`--ray local` (a one-machine Ray started for this run).

Each task carries what it needs (the model's config, the artifact's path, the shard's boxes) and reads the
artifact and the images from their paths, which every node must see (a shared folder); each worker process
keeps the model it loaded for its next shard. Results come back to this process, which writes the same shard
files a local run writes, as each task finishes: a cluster run and a local run leave the same files and
numbers. A task whose worker dies is run again (Ray's `max_retries`); an interrupted run resumes from its
shards like a local one.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from bmpose.errors import BmposeError

RETRIES = 3   # a task whose worker or node died runs again this many times
_LOADED: dict = {}   # per worker process: (artifact, chip, kind) -> the opened backend


def connect(address: str) -> None:
    """ray.init once per process: 'local' starts a one-machine Ray, 'auto' or host:port joins a cluster."""
    try:
        import ray
    except ImportError:
        raise BmposeError("--ray: Ray is not installed in this environment (`make setup` installs the pinned "
                          "ray)") from None
    if ray.is_initialized():
        return
    # Ray's default token authentication stays on; only its start-up notice is not the user's business
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    if address not in ("local", "auto"):
        _reachable(address)
    try:
        ray.init(address=None if address == "local" else address, logging_level="ERROR",
                 log_to_driver=False, include_dashboard=False, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise BmposeError(f"--ray {address}: no Ray cluster to join ({str(e).splitlines()[0]}); start one with "
                          f"`ray start --head`, or use --ray local") from None


def _reachable(address: str) -> None:
    """A clear line now instead of Ray's minute of retries when nothing listens at host:port."""
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except (OSError, ValueError) as e:
        raise BmposeError(f"--ray {address}: nothing answers there ({e}); expected the head node's HOST:PORT "
                          f"(`ray start --head` prints it), auto, or local") from None


def shard_task(cfg, artifact: str, chip: str | None, kind: str, shard: list, flip: bool,
               heatmaps: bool = False) -> dict:
    """One shard on a worker (module level, so Ray can ship it)."""
    from bmpose.evaluate.shards import predict_shard
    from bmpose.runtime.backends import open_backend

    key = (artifact, chip, kind)
    # one core per task: the cluster spreads the shards, not the mlir backend's own process pool
    os.environ.setdefault("BMPOSE_WORKERS", "1")
    if key not in _LOADED:
        _LOADED.clear()   # one model per worker at a time
        _LOADED[key] = open_backend(Path(artifact), chip, kind=kind)
    return predict_shard(cfg, _LOADED[key], shard, flip, heatmaps=heatmaps)


def spread(cfg, tasks: list[tuple], on_done, heatmaps: bool = False, task=None) -> None:
    """Each (artifact, chip, kind, shard, flip) of `tasks` as a task of the cluster (connect() first), several
    artifacts at once (a study's variants x shards); `on_done(i, result)` here, in the order they finish.
    `task`: another module-level function with shard_task's signature (tests)."""
    import ray

    remote = ray.remote(max_retries=RETRIES)(task or shard_task)
    cfg_ref = ray.put(cfg)
    pending = {remote.remote(cfg_ref, str(a), chip, kind, shard, flip, heatmaps): i
               for i, (a, chip, kind, shard, flip) in enumerate(tasks)}
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            on_done(pending.pop(ref), ray.get(ref))


def runner(cfg, artifact: Path, chip: str | None, kind: str, flip: bool, task=None):
    """A `runner(shards, todo, on_done)` for bmpose.evaluate.shards.run that spreads one artifact's shards over
    the cluster."""
    def run(shards: list, todo: list[int], on_done) -> None:
        spread(cfg, [(artifact, chip, kind, shards[i], flip) for i in todo], lambda j, r: on_done(todo[j], r),
               task=task)

    return run
