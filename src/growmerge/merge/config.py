"""Merge configs: mergekit's YAML as-is (the subset the paper uses), checked before any tensor is read.

A paper config looks like::

    merge_method: ties
    base_model: runs/x/models/eng-1x
    models:
      - model: runs/x/models/isl-1x
        parameters: {weight: 1.0, density: 0.5}
      - model: runs/x/models/fao-1x
        parameters: {weight: 1.0, density: 0.5}
    parameters: {normalize: true, int8_mask: true}
    dtype: float16

Only scalar parameters are supported (no gradients, no per-tensor filters, no slices): those are
errors here, never silently ignored. Which parameters a method takes, their types and ranges come
from its declaration in ``merge.registry``: a name no method declares is an error; one that does
nothing for the chosen method (``density`` on task_arithmetic, ``normalize`` on multislerp, ...)
is a warning, as mergekit ignores it.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ConfigDict, field_validator

from growmerge.config import Strict, load_yaml, parse

# The dtypes mergekit 0.1.5 knows by name (mergekit.common.dtype_from_name), minus int64.
DTYPES = ("float16", "bfloat16", "float32", "float64")

Scalar = bool | int | float


# NaN and infinities pass the schema here so that the registry's check names the parameter and its
# range ("weight=nan is outside (-inf, inf)") rather than pydantic's union branch.
REGISTRY_CHECKS_NUMBERS = ConfigDict(**{**Strict.model_config, "allow_inf_nan": True})


class ModelEntry(Strict):
    model_config = REGISTRY_CHECKS_NUMBERS
    model: str
    parameters: dict[str, Scalar] = {}


class MergeSpec(Strict):
    """One merge: mergekit's top-level keys plus an optional ``seed`` (mergekit's --random-seed)."""

    model_config = REGISTRY_CHECKS_NUMBERS

    merge_method: str
    base_model: str | None = None
    models: list[ModelEntry]
    parameters: dict[str, Scalar] = {}
    dtype: str | None = None
    out_dtype: str | None = None
    seed: int | None = None

    @field_validator("dtype", "out_dtype")
    @classmethod
    def _known_dtype(cls, value: str | None) -> str | None:
        if value is None:
            return value
        name = value.removeprefix("torch.")
        if name not in DTYPES:
            raise ValueError(f"unknown dtype {value!r}; use one of {', '.join(DTYPES)}")
        return name

    # -- resolved views -------------------------------------------------------------------------
    @property
    def model_paths(self) -> list[Path]:
        return [Path(m.model) for m in self.models]

    @property
    def base_path(self) -> Path | None:
        return Path(self.base_model) if self.base_model else None

    def per_model(self, name: str, default=None) -> list:
        """A per-model parameter in config order (model entry first, then the global value)."""
        return [m.parameters.get(name, self.parameters.get(name, default)) for m in self.models]

    def shared(self, name: str, default=None):
        return self.parameters.get(name, default)

    def check(self) -> list[str]:
        """Raise GrowmergeError on a config that cannot run; return warnings for ignored parameters."""
        from growmerge.merge.registry import get_method

        return get_method(self.merge_method).check(self)


def parse_spec(data: dict, source: str = "<merge spec>") -> MergeSpec:
    spec = parse(MergeSpec, data, source)
    spec.check()
    return spec


def read_mergekit_yaml(path: str | Path) -> MergeSpec:
    """A mergekit YAML with local paths -> MergeSpec (validated; relative paths are kept as written)."""
    spec = load_yaml(path, MergeSpec)
    spec.check()
    return spec
