"""The apply task: filter one shard (or a webdataset shard: sidecar + tar) with the plan, write
its decision records, commit it into OUTPUT. Runs unchanged on every executor."""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from scrub.dataset import Shard
from scrub.engine.decisions import write_decisions
from scrub.engine.filtering import filter_shard, warm_up
from scrub.engine.plan import MatchPlan
from scrub.engine.stats import ShardStats
from scrub.engine.warmup import compile_kernel
from scrub.errors import ScrubError, StorageError, from_os_error
from scrub.runtime.state import JobState
from scrub.storage import ObjectPath

#: What a worker prepares for a hint: a kernel the coming plan needs.
prepare = compile_kernel
#: The key of a completion marker holding :func:`input_tag` (inputs in object storage only).
INPUT_TAG = "input_etag"


def warm() -> None:
    """Exercise the read, filter and write paths once (a worker's first shard starts warm)."""
    warm_up()


def setup(payload: Mapping[str, Any]) -> Callable[[Shard], dict[str, Any]]:
    """The task: ``payload`` holds the plan, the column overrides, the data key and the state."""
    plan, state = payload["plan"], payload["state"]
    overrides, key = payload["overrides"], payload["key"]

    def run(shard: Shard) -> dict[str, Any]:
        stats, error = process_shard(plan, state, shard, overrides, key)
        return {"stats": stats.to_json() if stats else None, "error": error}

    return run


def process_shard(plan: MatchPlan, state: JobState, shard: Shard,
                  overrides: Mapping[str, str] | None, key: bytes | None = None
                  ) -> tuple[ShardStats | None, str | None]:
    """Filter and commit one shard: (stats, None), or (None, the one-line reason it failed).

    Only a full or failing disk raises (:class:`StorageError`): every shard would fail alike."""
    tar = tar_of(shard)
    # A plain shard is written straight into its upload when OUTPUT lies in object storage.
    tmp = state.staging(shard.name) if tar is not None else state.output_slot(shard.name)
    tmp_tar = state.staging(tar.name) if tar is not None else None
    try:
        tag = input_tag(shard, tar)  # before the read: a later replacement shows on the rerun
        if tar is not None and tmp_tar is not None and isinstance(tmp, Path):  # sidecar + tar
            from scrub.images.webdataset import filter_webdataset_shard  # only with a tar
            stats, records = filter_webdataset_shard(plan, shard, tmp, tmp_tar,
                                                     column_overrides=overrides, tar=tar)
        else:
            stats, records = filter_shard(plan, shard, tmp, column_overrides=overrides)
        stats.decisions = write_decisions(state.root / "decisions", shard.name, records, plan,
                                          key)
        staged = [(tmp_tar, tar.name)] if tar is not None and tmp_tar is not None else []
        marker = stats.to_json() | ({INPUT_TAG: tag} if tag is not None else {})
        state.commit(shard.name, [*staged, (tmp, shard.name)], marker)
        return stats, None
    except StorageError:
        raise  # a full disk fails every shard alike: stop the run (completed shards are kept)
    except ScrubError as exc:
        return None, _strip_path(exc.message, shard)
    except Exception as exc:  # an internal error: name its type only, messages may hold values
        full = from_os_error(exc, state.output / shard.name) if isinstance(exc, OSError) else None
        if isinstance(full, StorageError):
            raise full from None  # the disk, not this shard: every shard would fail alike
        detail = traceback.format_exc() if os.environ.get("SCRUB_DEBUG") else ""
        return None, f"internal error ({type(exc).__name__}){detail}"
    finally:
        tmp.unlink(missing_ok=True)
        if tmp_tar is not None:
            tmp_tar.unlink(missing_ok=True)


def input_tag(shard: Shard, tar: Path | ObjectPath | None) -> str | None:
    """The ETags of an input shard in object storage (and of its tar), recorded in its marker
    beside its size and time: an object replaced by one of the same size within the same
    second (Last-Modified has whole seconds) is made again. None for a local shard; a
    missing object's tag is None (reading it then fails with the usual error)."""
    tags = [_etag(path) for path in (shard.path, tar) if isinstance(path, ObjectPath)]
    return " ".join(str(t) for t in tags) if tags else None


def _etag(path: ObjectPath) -> str | None:
    try:
        return path.etag()
    except FileNotFoundError:
        return None


def tar_of(shard: Shard) -> Path | ObjectPath | None:
    """The tar beside a sidecar, if there is one (:func:`scrub.images.webdataset.tar_of`,
    without importing the image path, PIL and tars, for a shard that has none; one look, a
    request when the shard lies in object storage)."""
    tar = shard.path.with_suffix(".tar")
    if shard.has_tar is not None:  # the listing that found the shard told
        return tar if shard.has_tar else None
    return tar if tar.is_file() else None


def _strip_path(message: str, shard: Shard) -> str:
    prefix = f"{shard.path}: "
    return message[len(prefix):] if message.startswith(prefix) else message
