"""Building pydantic models without validation, for the parser's builder.

The builder already produces exactly the types the models declare
(tests/dsl checks that the result equals what validation gives), and
validating ~10,000 nested models is a good part of a big file's parse.
``BaseModel.model_construct`` skips validation too but is slower than
validating for these small models, so ``new`` does what it does with the
per-class work done once. It writes pydantic's instance slots directly, which
is why pyproject pins pydantic below 3.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

from dsl.ir import Span

__all__ = ["new", "new_span"]

_M = TypeVar("_M", bound=BaseModel)
_set = object.__setattr__
_SPAN_NEW = Span.__new__
_SPAN_FIELDS = frozenset({"line", "column", "end_line", "end_column"})
_LAYOUTS: dict[type, tuple[dict[str, Any], tuple[tuple[str, Any], ...], frozenset[str]]] = {}


def new_span(line: int, column: int, end_line: int, end_column: int) -> Span:
    """``Span(...)``, the commonest model by far, built directly."""
    span = _SPAN_NEW(Span)
    _set(span, "__dict__", {"line": line, "column": column, "end_line": end_line, "end_column": end_column})
    _set(span, "__pydantic_fields_set__", set(_SPAN_FIELDS))
    _set(span, "__pydantic_extra__", None)
    _set(span, "__pydantic_private__", None)
    return span


def _layout(cls: type[BaseModel]) -> tuple[dict[str, Any], tuple[tuple[str, Any], ...], frozenset[str]]:
    """A model's defaults (fields in declaration order), default factories
    and required fields."""
    defaults: dict[str, Any] = {}
    factories: list[tuple[str, Any]] = []
    required: set[str] = set()
    for name, info in cls.model_fields.items():
        if info.default_factory is not None:
            factories.append((name, info.default_factory))
            defaults[name] = None
        elif info.is_required():
            required.add(name)
            defaults[name] = None
        else:
            defaults[name] = info.default
    return defaults, tuple(factories), frozenset(required)


def new(cls: type[_M], **values: Any) -> _M:
    """``cls(**values)`` without validation, for values of the declared types."""
    layout = _LAYOUTS.get(cls)
    if layout is None:
        layout = _LAYOUTS[cls] = _layout(cls)
    defaults, factories, required = layout
    if not required <= values.keys():
        raise TypeError(f"{cls.__name__} needs {sorted(required - values.keys())}")
    data = defaults.copy()
    data.update(values)
    for name, factory in factories:
        if name not in values:
            data[name] = factory()
    model = cls.__new__(cls)
    _set(model, "__dict__", data)
    _set(model, "__pydantic_fields_set__", set(values))
    _set(model, "__pydantic_extra__", None)
    _set(model, "__pydantic_private__", None)
    return model
