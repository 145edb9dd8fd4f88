"""Where a name points: a local path or a Hugging Face Hub id, checked before anything is loaded so that a typo is
named as the argument it came from, not reported as a badly formed Hub id."""

from __future__ import annotations

import os

__all__ = ["looks_local", "is_hub_id", "check_model_source", "check_repo_id"]


def looks_local(source: str) -> bool:
    """Whether `source` can only be a local path: a Hub id is `name` or `owner/name`."""
    return (
        os.path.isabs(source)
        or source.startswith((".", "~"))
        or source.count("/") > 1
        or (os.sep != "/" and os.sep in source)
    )


def check_model_source(source: str, argument: str = "--model") -> None:
    """
    Refuse a model source that cannot be loaded, naming `argument`, before `from_pretrained` reports it as a badly
    formed Hub id: a path that does not exist, a file, or a folder without `config.json`. A Hub id passes.
    """
    if os.path.isdir(source):
        if not os.path.isfile(os.path.join(source, "config.json")):
            raise ValueError(f"{argument} {source}: the folder has no config.json; it is not a saved model")
    elif os.path.exists(source):
        raise ValueError(f"{argument} {source}: a file, not a model folder or a Hub id")
    elif looks_local(source):
        raise FileNotFoundError(f"{argument} {source}: no such folder")


def is_hub_id(name: str) -> bool:
    """Whether `name` is a Hub repo id (`owner/name`) rather than a local path."""
    return (
        name.count("/") == 1
        and not name.startswith(("/", ".", "~"))
        and not os.path.exists(name)
        and all(part.strip() for part in name.split("/"))
    )


def check_repo_id(repo_id: str, argument: str = "--repo_id") -> None:
    """
    Refuse a name the Hub would refuse as a repo id, naming `argument`, before anything is staged or trained: checked
    by huggingface_hub's own validator (`name` or `owner/name`; letters, digits, `-`, `_`, `.`).
    """
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise ValueError(f"{argument} {repo_id!r}: not a Hub repo id ({error})") from error
