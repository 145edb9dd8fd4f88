"""Sending a staged folder to the Hub: one commit that adds exactly the files of the folder (not shipped to the Hub)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["upload_staged"]


def upload_staged(
    staging: str | os.PathLike,
    repo_id: str,
    repo_type: str = "model",
    api: Any = None,
    private: bool = False,
    commit_message: str = "Upload SFAR",
) -> list:
    """Create the repo if needed and add every staged file in one commit; returns the operations sent."""
    from huggingface_hub import CommitOperationAdd, HfApi

    staging = Path(staging)
    api = api or HfApi()
    operations = [
        CommitOperationAdd(path_in_repo=p.relative_to(staging).as_posix(), path_or_fileobj=str(p))
        for p in sorted(staging.rglob("*"))
        if p.is_file()
    ]
    api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
    api.create_commit(repo_id, operations=operations, commit_message=commit_message, repo_type=repo_type)
    return operations
