"""Shared pieces of every YAML config: strict pydantic models and a loader with readable errors.

Each concept defines its own spec models (``train.spec``, ``merge.config``, ...) on top of ``Strict``;
``load_yaml`` turns any validation error into one ``GrowmergeError`` line naming the YAML path.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from growmerge.errors import GrowmergeError

M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    """Unknown keys are errors: a typo in a study YAML must never be silently ignored. Float fields
    refuse NaN and infinities (`.nan`, `.inf` in YAML): no setting is meaningful at either."""

    model_config = ConfigDict(extra="forbid", frozen=False, protected_namespaces=(), allow_inf_nan=False)


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise GrowmergeError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise GrowmergeError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict):
        raise GrowmergeError(f"{path}: expected a mapping at the top level")
    return data


def validation_message(exc: ValidationError, source: str) -> str:
    """First error of a pydantic ValidationError as `source: a.b[0].c: message`."""
    err = exc.errors()[0]
    loc = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in err["loc"]).replace(".[", "[")
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    msg = err["msg"].removeprefix("Value error, ")  # our validators' messages stand on their own
    return f"{source}: {loc + ': ' if loc else ''}{msg}{more}"


def parse(model: type[M], data: dict, source: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise GrowmergeError(validation_message(exc, source)) from None


def load_yaml(path: str | Path, model: type[M]) -> M:
    """Read a YAML file into `model`; every problem becomes one GrowmergeError line."""
    return parse(model, read_yaml(path), str(path))
