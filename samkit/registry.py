"""The head registry: which segmenters ``samkit.load`` can build, declared by the heads themselves.

Each built-in head declares its ``HeadSpec`` objects in a light module ``samkit/<head>/spec.py``
(no torch import); third-party distributions add theirs through the ``samkit.heads`` entry-point
group, whose entries load to a ``HeadSpec`` or an iterable of them::

    [project.entry-points."samkit.heads"]
    myhead = "myhead.spec:HEADS"

Discovery is lazy and happens once, on the first lookup. A spec module or entry point that fails to
import is recorded as a ``HeadProblem`` (its name and the error) and every other head keeps working;
two heads with one name are a problem naming both sources, and that name cannot be loaded until one
of them is removed. ``register`` adds a spec by hand and never overwrites silently.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterable
from dataclasses import dataclass, replace
from importlib import metadata

from samkit.errors import InputError

ENTRY_POINT_GROUP = "samkit.heads"
BUILTIN_SPEC_MODULES = (
    "samkit.image.spec",
    "samkit.longvideo.spec",
    "samkit.fewshot.spec",
    "samkit.referring.spec",
)
"""Light modules exposing ``HEADS: tuple[HeadSpec, ...]``, imported in this order."""
BUILTIN_SOURCE = "samkit"
INPUT_KINDS = ("image", "video")
STATUSES = ("available", "planned")
PROMPT_TYPES = ("Points", "Box", "Mask", "Text", "SupportSet")


@dataclass(frozen=True)
class WeightsSpec:
    """One downloadable weights file of a head: its file name and where to fetch it."""

    filename: str
    hf_repo: str | None = None
    url: str | None = None
    sha256: str | None = None
    description: str = ""

    @property
    def known_ids(self) -> tuple[str, ...]:
        """Strings accepted as ``checkpoint=`` for this file besides a local path."""
        return tuple(value for value in (self.filename, self.hf_repo, self.url) if value is not None)


@dataclass(frozen=True)
class HeadSpec:
    """A segmenter ``samkit.load(name)`` can build, and what it accepts.

    ``builder`` is ``"package.module:function"``, imported only when the head is loaded, and called as
    ``function(spec, *, backbone=None, checkpoint=None, backbone_checkpoint=None, device="auto", **options)``.
    """

    name: str
    builder: str
    input_kind: str
    prompt_types: tuple[str, ...]
    description: str
    default_backbone: str | None = None
    weights: tuple[WeightsSpec, ...] = ()
    status: str = "available"
    source: str = BUILTIN_SOURCE

    def __post_init__(self) -> None:
        where = f"HeadSpec {self.name!r} (from {self.source})"
        if not isinstance(self.name, str) or not self.name.strip():
            raise InputError(f"HeadSpec.name must be a non-empty str, got {self.name!r}")
        module, _, function = self.builder.partition(":") if isinstance(self.builder, str) else ("", "", "")
        if not module or not function:
            raise InputError(f"{where}: builder must be 'package.module:function', got {self.builder!r}")
        if self.input_kind not in INPUT_KINDS:
            raise InputError(f"{where}: input_kind must be one of {INPUT_KINDS}, got {self.input_kind!r}")
        if self.status not in STATUSES:
            raise InputError(f"{where}: status must be one of {STATUSES}, got {self.status!r}")
        object.__setattr__(self, "prompt_types", tuple(self.prompt_types))
        object.__setattr__(self, "weights", tuple(self.weights))
        unknown = [kind for kind in self.prompt_types if kind not in PROMPT_TYPES]
        if unknown or not self.prompt_types:
            raise InputError(f"{where}: prompt_types must be a non-empty subset of {PROMPT_TYPES}, got "
                             f"{self.prompt_types!r}")
        if not all(isinstance(weights, WeightsSpec) for weights in self.weights):
            raise InputError(f"{where}: weights must be WeightsSpec objects")

    @property
    def is_backbone(self) -> bool:
        """True for a backbone's own promptable segmenter (the head *is* its backbone)."""
        return self.name == self.default_backbone


@dataclass(frozen=True)
class HeadProblem:
    """A head that could not be registered: what failed (a spec module, entry point or name) and why."""

    name: str
    source: str
    error: str

    def __str__(self) -> str:
        return f"{self.name} (from {self.source}): {self.error}"


class HeadRegistry:
    """Registered heads by name, discovered lazily from the built-in spec modules and entry points."""

    def __init__(self, spec_modules: tuple[str, ...] = BUILTIN_SPEC_MODULES,
                 group: str = ENTRY_POINT_GROUP) -> None:
        self.spec_modules = spec_modules
        self.group = group
        self._lock = threading.RLock()
        self._heads: dict[str, HeadSpec] = {}
        self._duplicates: dict[str, list[HeadSpec]] = {}
        self._problems: list[HeadProblem] = []
        self._discovered = False

    def register(self, spec: HeadSpec, *, replace_existing: bool = False) -> None:
        """Add ``spec``; a different spec already under its name is an InputError naming both sources."""
        if not isinstance(spec, HeadSpec):
            raise InputError(f"register() takes a samkit.registry.HeadSpec, got {type(spec).__name__}")
        with self._lock:
            self._discover()
            self._add(spec, replace_existing=replace_existing)

    def unregister(self, name: str) -> HeadSpec:
        """Remove and return the head registered as ``name``."""
        with self._lock:
            self._discover()
            self._duplicates.pop(name, None)
            if name not in self._heads:
                raise InputError(f"no head named {name!r} is registered")
            return self._heads.pop(name)

    def get(self, name: str) -> HeadSpec:
        """The spec of ``name``; unknown and duplicated names are InputErrors that say what to do."""
        with self._lock:
            self._discover()
            if name in self._duplicates:
                raise InputError(_duplicate_message(self._duplicates[name]))
            if name not in self._heads:
                raise InputError(self._unknown_message(name))
            return self._heads[name]

    def specs(self) -> list[HeadSpec]:
        """Every registered spec: heads before backbone segmenters, then by name."""
        with self._lock:
            self._discover()
            heads = [spec for name, spec in self._heads.items() if name not in self._duplicates]
        return sorted(heads, key=lambda spec: (spec.is_backbone, spec.name))

    def problems(self) -> list[HeadProblem]:
        """Spec modules / entry points that failed to import, and duplicated names."""
        with self._lock:
            self._discover()
            duplicates = [HeadProblem(name, ", ".join(spec.source for spec in specs), _duplicate_message(specs))
                          for name, specs in self._duplicates.items()]
            return list(self._problems) + duplicates

    def refresh(self) -> None:
        """Forget everything and discover again on the next lookup (after installing a plug-in)."""
        with self._lock:
            self._heads, self._duplicates, self._problems = {}, {}, []
            self._discovered = False

    # ------------------------------------------------------------------------------------ internals

    def _discover(self) -> None:
        if self._discovered:
            return
        for module_name in self.spec_modules:
            try:
                found = importlib.import_module(module_name).HEADS
            except Exception as error:  # noqa: BLE001 - a broken head must not hide the others
                self._problems.append(HeadProblem(module_name, BUILTIN_SOURCE, _describe(error)))
                continue
            self._add_found(found, module_name, BUILTIN_SOURCE)
        for entry_point in _entry_points(self.group):
            source = _distribution_name(entry_point)
            try:
                found = entry_point.load()
            except Exception as error:  # noqa: BLE001 - a broken plug-in must not hide the others
                self._problems.append(HeadProblem(entry_point.name, source, _describe(error)))
                continue
            self._add_found(found, entry_point.name, source)
        # marked only once every spec above is registered: a failure never leaves the registry empty
        self._discovered = True

    def _add_found(self, found: object, name: str, source: str) -> None:
        specs = [found] if isinstance(found, HeadSpec) else found
        if not isinstance(specs, Iterable) or isinstance(specs, (str, bytes)):
            self._problems.append(HeadProblem(name, source, f"expected a HeadSpec or an iterable of HeadSpecs, got "
                                                            f"{type(found).__name__}"))
            return
        for spec in list(specs):
            if not isinstance(spec, HeadSpec):
                self._problems.append(HeadProblem(name, source, f"expected a HeadSpec, got {type(spec).__name__}"))
                continue
            if source != BUILTIN_SOURCE and spec.source == BUILTIN_SOURCE:
                spec = replace(spec, source=source)
            try:
                self._add(spec, replace_existing=False)
            except InputError:
                self._duplicates.setdefault(spec.name, [self._heads[spec.name]]).append(spec)

    def _add(self, spec: HeadSpec, *, replace_existing: bool) -> None:
        existing = self._heads.get(spec.name)
        if existing is not None and existing != spec and not replace_existing:
            raise InputError(_duplicate_message([existing, spec]) + "; pass replace_existing=True to replace it")
        self._duplicates.pop(spec.name, None)
        self._heads[spec.name] = spec

    def _unknown_message(self, name: str) -> str:
        known = ", ".join(sorted(self._heads))
        message = f"unknown model {name!r}; known models: {known}"
        if self._problems:
            message += "; heads that failed to load: " + "; ".join(str(problem) for problem in self._problems)
        return message


def _duplicate_message(specs: list[HeadSpec]) -> str:
    sources = " and ".join(f"{spec.source} ({spec.builder})" for spec in specs)
    return f"head name {specs[0].name!r} is declared twice, by {sources}; uninstall or rename one of them"


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _entry_points(group: str) -> list[metadata.EntryPoint]:
    return sorted(metadata.entry_points(group=group), key=lambda entry_point: entry_point.name)


def _distribution_name(entry_point: metadata.EntryPoint) -> str:
    distribution = getattr(entry_point, "dist", None)
    name = getattr(distribution, "name", None) if distribution is not None else None
    return f"distribution {name!r}" if name else f"entry point {entry_point.value!r}"


REGISTRY = HeadRegistry()
"""The process-wide registry ``samkit.load`` and ``samkit models`` read."""


def register(spec: HeadSpec, *, replace_existing: bool = False) -> None:
    """Register ``spec`` in the process-wide registry (see ``HeadRegistry.register``)."""
    REGISTRY.register(spec, replace_existing=replace_existing)


def get_spec(name: str) -> HeadSpec:
    """The spec registered as ``name`` (InputError listing the known ones otherwise)."""
    return REGISTRY.get(name)


def list_specs() -> list[HeadSpec]:
    """Every registered spec, heads first, then the backbones' own segmenters."""
    return REGISTRY.specs()


def problems() -> list[HeadProblem]:
    """Heads that failed to register, with the reason."""
    return REGISTRY.problems()
