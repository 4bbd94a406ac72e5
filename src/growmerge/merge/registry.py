"""The merge-method registry: each method declared once (name, parameters, compat and fast code).

A method is one ``Method(...)`` passed to ``register`` -- from a module in ``growmerge.merge.methods``
(imported automatically on first use, so a new built-in method is one new file there) or from any
module the caller imports before merging. Everything that needs to know a method's parameters
(mergekit YAML validation, ``merge-grid``, the CLI help, the study spec) reads them from here.

This module does not import torch: the CLI and the study spec can name methods without it (the
built-in method modules do import torch when the registry is first read).
"""

from __future__ import annotations

import importlib
import math
import pkgutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, Callable

from growmerge.errors import GrowmergeError

if TYPE_CHECKING:
    import torch

REQUIRED = object()  # a parameter default: the config must give a value


@dataclass(frozen=True)
class Param:
    """One parameter of a merge method, as mergekit names it.

    `per_model` parameters may be given per model entry or once for all (mergekit's fallback);
    the method code reads them as a list in config order. `attr` is the attribute name the method
    code reads (``lambda`` is a Python keyword; per-model lists read better in the plural).
    `low`/`high` bound numbers (`open_low`: the bound itself is refused). `inert`: mergekit accepts
    the parameter but it changes nothing for this method (a warning, as for unknown ones)."""

    name: str
    kind: type = float  # float | bool | int
    default: object = REQUIRED
    per_model: bool = False
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    inert: bool = False
    attr: str = ""
    help: str = ""

    def attribute(self) -> str:
        return self.attr or self.name

    def range_text(self) -> str:
        lo = "-inf" if self.low is None else f"{self.low:g}"
        hi = "inf" if self.high is None else f"{self.high:g}"
        return f"{'(' if self.open_low or self.low is None else '['}{lo}, {hi}{')' if self.high is None else ']'}"

    def convert(self, value, where: str):
        """The value as the method reads it, or a GrowmergeError naming the parameter."""
        if self.kind is bool:
            # YAML gives true/false; 0 and 1 are what bool() made of them before validation existed.
            if value in (True, False, 0, 1):
                return bool(value)
            raise GrowmergeError(f"{where} parameter {self.name}={value!r} must be true or false")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise GrowmergeError(f"{where} parameter {self.name}={value!r} must be a number")
        number = self.kind(value)
        if not math.isfinite(number) or not self._in_range(number):
            raise GrowmergeError(f"{where} parameter {self.name}={value!r} is outside {self.range_text()}")
        return number

    def _in_range(self, x: float) -> bool:
        if self.low is not None and (x < self.low or (self.open_low and x == self.low)):
            return False
        return self.high is None or x <= self.high

    def parse(self, text: str):
        """A value given on the command line (``--param name=value``)."""
        if self.kind is bool:
            flag = {"true": True, "false": False, "1": True, "0": False}.get(text.strip().lower())
            if flag is None:
                raise GrowmergeError(f"--param {self.name}={text}: expected true or false")
            return flag
        try:
            return self.kind(text)
        except ValueError:
            raise GrowmergeError(f"--param {self.name}={text}: expected a number") from None


@dataclass
class Ctx:
    """Per-merge execution context shared by every tensor of that merge."""

    compat: bool = False
    seed: int = 0
    rounded: torch.dtype | None = None  # the config dtype inputs are rounded to on load
    compute: torch.dtype | None = None  # default mode's arithmetic dtype (the engine sets it)
    generator: torch.Generator | None = None  # compat DARE: one stream per merge, seeded once
    name: str = ""  # the tensor being merged (default-mode DARE seeds from it)
    shape: tuple = ()
    device: torch.device | None = None  # where the default mode computes (None: CPU)

    def torch_generator(self) -> torch.Generator:
        if self.generator is None:
            import torch

            self.generator = torch.Generator().manual_seed(self.seed)
        return self.generator


class Params(SimpleNamespace):
    """Resolved parameters of one merge, as attributes (`Param.attribute()`); per-model ones are lists
    in config order (base excluded)."""


@dataclass(frozen=True)
class Method:
    """A merge method: its parameters and its two implementations.

    compat: (xs, base, params, ctx) -> tensor; full tensors in the config dtype, mergekit 0.1.5's
            operations in its order (bit for bit).
    fast:   (xs, base, params, ctx, out) -> None; flat views as stored, float32 in chunks
            (``merge.fast`` has the helpers), the result written into the flat `out`.
    base:   "required" | "optional" | "forbidden" (a base_model in the config).
    validate: optional cross-parameter check on the resolved Params (raise GrowmergeError)."""

    name: str
    params: tuple[Param, ...]
    compat: Callable
    fast: Callable
    base: str = "required"
    max_models: int | None = None
    validate: Callable[[Params, str], None] | None = None
    help: str = ""

    def effective(self, per_model: bool) -> list[Param]:
        """The parameters that change the numbers, per-model or global ones."""
        return [p for p in self.params if p.per_model == per_model and not p.inert]

    def check(self, spec) -> list[str]:
        """Raise GrowmergeError for configs that cannot run; return warnings for parameters that
        change nothing (mergekit ignores them too, so shared configs keep working)."""
        where = f"{self.name}:"
        self._check_inputs(spec, where)
        warnings = self._check_names(spec, where)
        p = self.resolve(spec)
        if self.validate:
            self.validate(p, where)
        return warnings

    def _check_inputs(self, spec, where: str) -> None:
        if self.base == "required" and not spec.base_model:
            raise GrowmergeError(f"{where} needs base_model (the model the task vectors are taken from)")
        if self.base == "forbidden" and spec.base_model:
            raise GrowmergeError(f"{where} takes no base_model (mergekit 0.1.5 fails on it); remove base_model")
        if not spec.models:
            raise GrowmergeError(f"{where} needs at least one entry under models")
        if self.max_models and len(spec.models) > self.max_models:
            raise GrowmergeError(f"{where} merges exactly {self.max_models} model(s) with the base")
        paths = [str(p.resolve()) for p in spec.model_paths]
        if spec.base_model:
            paths.append(str(spec.base_path.resolve()))
        dup = next((p for p in paths if paths.count(p) > 1), None)
        if dup:
            raise GrowmergeError(f"{where} {dup} is listed twice (models must be distinct, and not the base)")

    def _check_names(self, spec, where: str) -> list[str]:
        """Names no registered method knows are errors (typos); names of other methods' parameters
        and inert ones are warnings."""
        given_per_model = {k for m in spec.models for k in m.parameters}
        known = {p.name for m in METHODS.values() for p in m.params}
        unknown = sorted((given_per_model | set(spec.parameters)) - known)
        if unknown:
            raise GrowmergeError(f"{where} unknown parameter {unknown[0]!r}; {self.name} takes "
                                 f"{', '.join(p.name for p in self.params) or 'none'}")
        mine = {p.name: p for p in self.params}
        warnings = []
        for key in sorted(given_per_model):
            if key not in mine or not mine[key].per_model:
                warnings.append(f"{where} per-model parameter {key!r} is ignored by this method (as in mergekit)")
        for key in spec.parameters:
            if key not in mine:
                warnings.append(f"{where} parameter {key!r} is ignored by this method (as in mergekit)")
        for p in self.params:
            if p.inert and (p.name in spec.parameters or p.name in given_per_model):
                warnings.append(f"{where} parameter {p.name!r} has no effect on this method (as in mergekit)")
        return warnings

    def resolve(self, spec) -> Params:
        """The declared parameters' values (validated), per-model ones as lists in config order."""
        where = f"{self.name}:"
        values = {}
        for p in self.params:
            if p.per_model:
                given = spec.per_model(p.name, p.default)
                for entry, value in zip(spec.models, given):
                    if value is REQUIRED:
                        raise GrowmergeError(f"{where} model {entry.model} needs parameters.{p.name}")
                values[p.attribute()] = [p.convert(v, f"{where} model {e.model}:") for e, v in zip(spec.models, given)]
            else:
                value = spec.shared(p.name, p.default)
                if value is REQUIRED:
                    raise GrowmergeError(f"{where} needs parameters.{p.name}")
                values[p.attribute()] = p.convert(value, where)
        return Params(**values)


def weights_must_not_cancel(p: Params, where: str) -> None:
    """For methods that divide by the sum of the weights when normalising."""
    if p.normalize and abs(sum(p.weights)) < 1e-8:
        raise GrowmergeError(f"{where} weights sum to 0, which normalize cannot divide by")


# ---------------------------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------------------------
_REGISTERED: dict[str, Method] = {}
_builtins_loaded = False


def register(method: Method, replace: bool = False) -> Method:
    """Add a method (call it at import time of the module that declares it); returns it."""
    if method.name in _REGISTERED and not replace and _REGISTERED[method.name] is not method:
        raise GrowmergeError(f"merge method {method.name!r} is already registered")
    names = [p.name for p in method.params]
    if len(set(names)) != len(names):
        raise GrowmergeError(f"merge method {method.name!r} declares a parameter twice: {names}")
    _REGISTERED[method.name] = method
    return method


def unregister(name: str) -> None:
    _REGISTERED.pop(name, None)


def _load_builtins() -> None:
    """Import every module of growmerge.merge.methods once: each registers its methods."""
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    from growmerge.merge import methods

    for info in sorted(pkgutil.iter_modules(methods.__path__), key=lambda i: i.name):
        importlib.import_module(f"{methods.__name__}.{info.name}")


class _Methods(Mapping):
    """Read-only view of the registry that loads the built-in methods on first use."""

    def __getitem__(self, name: str) -> Method:
        _load_builtins()
        return _REGISTERED[name]

    def __iter__(self) -> Iterator[str]:
        _load_builtins()
        return iter(list(_REGISTERED))

    def __len__(self) -> int:
        _load_builtins()
        return len(_REGISTERED)


METHODS: Mapping[str, Method] = _Methods()


def method_names() -> list[str]:
    return list(METHODS)


def get_method(name: str) -> Method:
    """The method `name`, or a GrowmergeError listing the registered ones."""
    if name not in METHODS:
        raise GrowmergeError(f"unknown merge method {name!r}; use one of {', '.join(METHODS)}")
    return METHODS[name]


def parameter_names() -> list[str]:
    """Every parameter some registered method declares (what merge-grid accepts)."""
    return sorted({p.name for m in METHODS.values() for p in m.params})


def find_param(name: str) -> Param:
    """The declaration of a parameter by name (the first method declaring it decides its type)."""
    found = next((p for m in METHODS.values() for p in m.params if p.name == name), None)
    if found is None:
        raise GrowmergeError(f"unknown merge parameter {name!r}; use one of {', '.join(parameter_names())}")
    return found
