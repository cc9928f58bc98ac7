"""Changing a few fields of a frozen settings dataclass, refusing keys it does not have."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from inspector.errors import InspectorError

T = TypeVar("T")


def replace_known(instance: T, overrides: dict[str, Any], error: type[InspectorError]) -> T:
    """A copy of `instance` with `overrides` applied; unknown keys raise `error` naming them and the known ones."""
    known = {f.name for f in dataclasses.fields(instance)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        name = type(instance).__name__
        raise error(f"unknown {name} key(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return dataclasses.replace(instance, **overrides)
