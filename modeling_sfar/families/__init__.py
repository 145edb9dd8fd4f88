"""The model families (SFAR, ALT), one small adapter each, looked up by `--model_type` (`get_family`) or by a
configuration's `model_type` (`family_of`)."""

from __future__ import annotations

from typing import Any

from .alt import ALT
from .base import ModelFamily
from .sfar import SFAR

__all__ = ["FAMILIES", "ModelFamily", "get_family", "family_of", "unknown_flags_message"]

FAMILIES: dict[str, ModelFamily] = {family.name: family for family in (SFAR, ALT)}


def get_family(name: str) -> ModelFamily:
    """The family of `--model_type name`. Raises `ValueError` for an unknown name, listing the choices."""
    if name not in FAMILIES:
        raise ValueError(f"--model_type must be one of {list(FAMILIES)}, got {name!r}")
    return FAMILIES[name]


def family_of(config: Any) -> ModelFamily:
    """The family of a configuration (or of its `model_type` string, or of a saved `config.json` as a dict)."""
    model_type = config if isinstance(config, str) else (
        config.get("model_type") if isinstance(config, dict) else config.model_type
    )
    for family in FAMILIES.values():
        if family.model_type == model_type:
            return family
    known = [family.model_type for family in FAMILIES.values()]
    raise ValueError(f"{model_type!r} is not a model type of this package ({known})")


def unknown_flags_message(family: ModelFamily, remaining: list[str], command: str, kind: str = "arguments") -> str:
    """
    Why a command line of `family` left `remaining` strings unparsed: the flags another family takes (its
    `arguments` or `evaluation_arguments` dataclass, as `kind` says), named with their family, or else the unknown
    strings; `command` is the script, for the `--help` hint.
    """
    from dataclasses import fields

    flags = [item.split("=")[0] for item in remaining if item.startswith("--")]
    for other in FAMILIES.values():
        if other is family:
            continue
        theirs = {f"--{f.name}" for f in fields(getattr(other, kind))}
        found = [flag for flag in flags if flag in theirs]
        if found:
            return f"{', '.join(found)}: {other.title}'s, not {family.title}'s ({command} --help lists the flags)"
    return f"unknown arguments {remaining} ({command} --help lists the flags)"
