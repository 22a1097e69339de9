"""MkDocs hook: render pydantic config models as markdown tables at build time.

A page asks for a model's table with a line of its own::

    <!-- config-table geckokit.pipeline.distill:DistillConfig prefix= -->

and gets one row per field: the key as a config file spells it (``prefix`` + field name, so
``mine.top_n`` for the nested table ``[mine]``), its type, its default and its description
with the field's bounds. The rows come from the model itself (``model_fields``), so the page
cannot drift from the code. A field that is itself a model (a nested table) links to the
heading whose id is its key with dots as dashes (``{#generate-validation}``).
"""

from __future__ import annotations

import enum
import importlib
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any

import annotated_types
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

# Document the code of this checkout, whichever geckokit is installed.
_SRC = str(Path(__file__).resolve().parents[2] / "src")
if _SRC not in sys.path:
    sys.path.insert(0, _SRC)

MARKER = re.compile(r"^<!-- config-table (?P<target>[\w.]+:\w+)(?P<options>(?: \w+=\S*)*) -->$")


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """Replace every marker line of the page with its model's table."""
    out = []
    for line in markdown.splitlines():
        match = MARKER.match(line.strip())
        if match is None:
            out.append(line)
            continue
        options = dict(o.split("=", 1) for o in match["options"].split())
        out.append(config_table(load_model(match["target"]), prefix=options.get("prefix", "")))
    return "\n".join(out) + "\n"


def load_model(target: str) -> type[BaseModel]:
    """The model named ``module:Class``; a clear error when it is not one."""
    module, _, name = target.partition(":")
    model = getattr(importlib.import_module(module), name, None)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise ValueError(f"config-table {target}: not a pydantic model")
    return model


def config_table(model: type[BaseModel], *, prefix: str = "") -> str:
    """A markdown table of ``model``'s fields: key, type, default, description."""
    rows = ["| key | type | default | description |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        nested = _nested_model(field.annotation)
        if nested is not None:
            default = f"see [`[{prefix}{name}]`](#{_anchor(prefix + name)})"
        else:
            default = _default(field)
        text = field.description or ""
        bounds = _bounds(field.metadata)
        if bounds:
            text = f"{text} ({bounds})" if text else bounds
        rows.append(
            f"| `{prefix}{name}` | {_cell(type_name(field.annotation))} | {_cell(default)} "
            f"| {_cell(text)} |"
        )
    return "\n".join(rows)


def type_name(annotation: Any) -> str:
    """A short reading of a type: ``int``, ``str | None``, ``list[str]``, an enum's values."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is not None:
        inner = ", ".join(type_name(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    if annotation is type(None):
        return "None"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return " | ".join(f'"{m.value}"' for m in annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "table"
    return getattr(annotation, "__name__", str(annotation))


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _default(field: Any) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    return _literal(value)


def _literal(value: Any) -> str:
    """A default as a config file would write it."""
    if isinstance(value, enum.Enum):
        value = value.value
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_literal(v)}" for k, v in value.items()) + "}"
    return repr(value)


_BOUNDS = {
    annotated_types.Ge: (">=", "ge"),
    annotated_types.Gt: (">", "gt"),
    annotated_types.Le: ("<=", "le"),
    annotated_types.Lt: ("<", "lt"),
    annotated_types.MinLen: ("length >=", "min_length"),
    annotated_types.MaxLen: ("length <=", "max_length"),
}


def _bounds(metadata: list[Any]) -> str:
    parts = []
    for item in metadata:
        for kind, (symbol, attr) in _BOUNDS.items():
            if isinstance(item, kind):
                parts.append(f"{symbol} {getattr(item, attr)}")
    return ", ".join(parts)


def _anchor(key: str) -> str:
    """The id of the heading that documents the nested table ``key``."""
    return key.replace(".", "-")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
