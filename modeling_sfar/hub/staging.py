"""Staging a repo in a folder of its own and sending it to the Hub in one commit (not shipped to the Hub).

A staging folder is emptied before it is written again, so the tools that stage must never point that at anything
else: `prepare_staging` refuses a folder that is, contains or lies inside the source, or that holds files an earlier
staging did not write. The folders it owns carry a marker file (`STAGING_MARKER`) listing the files staged there.
`staging_folder` says where a push or a dry run stages: a dry run that is not given a folder stages in a temporary
one of its own and removes it, so that dry runs leave nothing behind.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .sources import check_repo_id

logger = logging.getLogger(__name__)

__all__ = [
    "STAGING_MARKER", "prepare_staging", "push_staged", "record_staging", "staged_files", "staging_folder",
    "upload_staged",
]  # fmt: skip

STAGING_MARKER = ".sfar-staging.json"


def staged_files(staging: str | os.PathLike) -> list[str]:
    """The relative paths of the files under `staging` that belong to the repo (all but the marker), sorted."""
    staging = Path(staging)
    return sorted(
        p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file() and p.name != STAGING_MARKER
    )


def _within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


@contextmanager
def staging_folder(
    source: str | os.PathLike, staging: str | os.PathLike | None = None, dry_run: bool = False
) -> Iterator[Path]:
    """
    Where a repo built from `source` is staged: `staging` when given (kept, for a dry run too, to be read); else,
    for a push, `<source>-hub` (kept; the next push replaces it); else, for a dry run, a temporary folder beside
    `source` (on the same disk as the default staging), removed when the block ends.
    """
    if staging is not None or not dry_run:
        folder = Path(staging if staging is not None else f"{os.fspath(source).rstrip('/')}-hub")
        yield folder
        if dry_run:
            logger.info("dry run: the repo is staged in %s; nothing is sent", folder)
        return
    parent = Path(source).resolve().parent
    with tempfile.TemporaryDirectory(prefix=f"{Path(source).resolve().name}-dry-run-", dir=parent) as folder:
        yield Path(folder)
        logger.info("dry run: nothing is sent, and the staging folder %s is removed (--staging DIR keeps it)", folder)


def prepare_staging(source: str | os.PathLike, staging: str | os.PathLike) -> Path:
    """
    Make `staging` an empty folder owned by the staging tools, for a repo built from `source`, and return it.

    A folder that does not exist is created, an empty one is taken over; one that an earlier staging wrote (its
    marker lists every file in it) is emptied of those files, and of nothing else.

    Raises:
        ValueError: `staging` is, contains or lies inside `source`; it is a file; or it holds files that no staging
            wrote (nothing is deleted then). The message names the folder.
    """
    source, staging = Path(source).resolve(), Path(staging).resolve()
    if _within(staging, source) or _within(source, staging):
        relation = "is" if staging == source else "lies inside" if _within(staging, source) else "contains"
        raise ValueError(
            f"--staging {staging} {relation} --folder {source}: staging empties its folder, so it must be a "
            "separate folder (default: <folder>-hub)"
        )
    if staging.exists() and not staging.is_dir():
        raise ValueError(f"--staging {staging}: a file, not a folder")
    marker = staging / STAGING_MARKER
    if staging.is_dir() and any(staging.iterdir()):
        owned: set[str] = set()
        if marker.is_file():
            try:
                owned = set(json.loads(marker.read_text())["files"])
            except (json.JSONDecodeError, KeyError, TypeError) as error:
                raise ValueError(f"--staging {staging}: its {STAGING_MARKER} is unreadable ({error})") from error
        foreign = [f for f in staged_files(staging) if f not in owned]
        if not marker.is_file() or foreign:
            shown = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
            raise ValueError(
                f"--staging {staging}: the folder holds files that no earlier staging wrote ({shown or 'no marker'}); "
                "nothing was deleted. Pick a new or empty folder."
            )
        for relative in sorted(owned, reverse=True):
            (staging / relative).unlink(missing_ok=True)
        # folders left empty by those files, deepest first (the ones the staging made)
        for folder in sorted((p for p in staging.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            if not any(folder.iterdir()):
                folder.rmdir()
    staging.mkdir(parents=True, exist_ok=True)
    (staging / STAGING_MARKER).write_text(json.dumps({"files": []}))
    return staging


def record_staging(staging: str | os.PathLike, planned: list[str] | None = None) -> list[str]:
    """
    Write the marker of `staging`, listing the files that a later staging may remove: `planned` (the relative paths
    about to be written, recorded before writing so that a staging cut short still owns its files), or the files
    now there. Returns the files now there.
    """
    files = staged_files(staging)
    owned = sorted(set(files) | set(planned or []))
    (Path(staging) / STAGING_MARKER).write_text(json.dumps({"files": owned}, indent=1))
    return files


def upload_staged(
    staging: str | os.PathLike,
    repo_id: str,
    repo_type: str = "model",
    api: Any = None,
    private: bool = False,
    commit_message: str = "Upload SFAR",
    space_sdk: str | None = None,
) -> list:
    """Create the repo if needed (a Space with `space_sdk`) and add every staged file (not the marker) in one commit;
    returns the operations."""
    from huggingface_hub import CommitOperationAdd, HfApi

    staging = Path(staging)
    api = api or HfApi()
    operations = [
        CommitOperationAdd(path_in_repo=relative, path_or_fileobj=str(staging / relative))
        for relative in staged_files(staging)
    ]
    extra = {"space_sdk": space_sdk} if space_sdk else {}
    api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True, **extra)
    api.create_commit(repo_id, operations=operations, commit_message=commit_message, repo_type=repo_type)
    return operations


def push_staged(
    source: str | os.PathLike,
    stage: Callable[[Path, Path], list[str]],
    repo_id: str,
    repo_type: str,
    commit_message: str | Callable[[], str],
    dry_run: bool = False,
    api: Any = None,
    staging: str | os.PathLike | None = None,
    private: bool = False,
    space_sdk: str | None = None,
) -> list[str]:
    """
    Every push: check `repo_id` (in a dry run too), stage `source` with `stage(source, folder)` in the folder
    `staging_folder` gives, and unless `dry_run` upload it in one commit (`upload_staged`; `commit_message` may be a
    function, called only then); returns the repo's files.

    Raises:
        ValueError: `repo_id` is not a Hub repo id, named as `--repo_id`.
    """
    check_repo_id(repo_id)
    with staging_folder(source, staging, dry_run) as where:
        files = stage(source, where)
        if not dry_run:
            message = commit_message() if callable(commit_message) else commit_message
            upload_staged(where, repo_id, repo_type, api, private, message, space_sdk)
    return files
