"""Flags made from the fields of the config models, so that a flag's default, choices,
bounds and stated default cannot drift from the setting it sets.

``@setting_option(TrainConfig, "batch_size", help=...)`` is ``@click.option("--batch-size",
...)`` with ``TrainConfig.batch_size``'s default (click shows it), type and bounds; an enum
field gives the choices. A handler reads the flags back as the model's keys with
:func:`setting_overrides`. ``tests/cli/test_options_match_configs.py`` checks that no flag
of a command restates one of its config's fields by hand."""

from __future__ import annotations

import enum
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import annotated_types
import click
from pydantic import BaseModel
from pydantic.fields import FieldInfo

F = TypeVar("F", bound=Callable[..., Any])


def setting_field(model: type[BaseModel], path: str) -> FieldInfo:
    """The field ``path`` of ``model``, dotted through nested models (``mine.top_n``)."""
    *tables, leaf = path.split(".")
    for name in tables:
        nested = model.model_fields[name].annotation
        if not (isinstance(nested, type) and issubclass(nested, BaseModel)):
            raise ValueError(f"{model.__name__}.{name} is not a nested model (in {path!r})")
        model = nested
    if leaf not in model.model_fields:
        raise ValueError(f"{model.__name__} has no field {leaf!r} (in {path!r})")
    return model.model_fields[leaf]


def setting_default(model: type[BaseModel], path: str) -> Any:
    """The default of the field ``path`` of ``model`` (a default factory called; None for a
    required field)."""
    field = setting_field(model, path)
    return None if field.is_required() else field.get_default(call_default_factory=True)


def flag_value(value: Any) -> Any:
    """A setting's value as its flag spells it: an enum's value, a list or tuple joined by
    commas (numbers without trailing zeros: ``1,1,0``)."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list | tuple):
        return ",".join(f"{v:g}" if isinstance(v, float) else str(flag_value(v)) for v in value)
    return value


def _bare(annotation: Any) -> Any:
    """The annotation without ``| None``."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _click_type(field: FieldInfo) -> Any:
    """The click type of a field: an enum's choices, an int or float with the field's bounds
    as a range, ``str``; None for anything else (lists, tables: the flag names its type)."""
    kind = _bare(field.annotation)
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return click.Choice([member.value for member in kind])
    if kind not in (int, float, str):
        return None
    bounds: dict[str, Any] = {}
    for item in field.metadata:
        if isinstance(item, annotated_types.Ge | annotated_types.Gt):
            bounds["min"] = item.ge if isinstance(item, annotated_types.Ge) else item.gt
            bounds["min_open"] = isinstance(item, annotated_types.Gt)
        elif isinstance(item, annotated_types.Le | annotated_types.Lt):
            bounds["max"] = item.le if isinstance(item, annotated_types.Le) else item.lt
            bounds["max_open"] = isinstance(item, annotated_types.Lt)
    if not bounds or kind is str:
        return kind
    return click.IntRange(**bounds) if kind is int else click.FloatRange(**bounds)


class SettingOption(click.Option):
    """A flag that sets the field ``setting`` = (model, dotted path) of a config model.

    Its default, type (an enum's choices, a number's bounds) and stated default are the
    field's. ``inherit``: the flag defaults to None, "unset" (``geckokit distill``, where a
    config file may set it too), and its help ends with the field's default; so does the
    help of a flag whose field defaults to None. ``default_text`` says what the default is
    where the field's value alone does not (it depends on the machine or on another
    setting). A flag given ``multiple=True`` adds to a list field and defaults to none.
    Anything else (help, a type of the flag's own, callback) is click's, given as usual."""

    def __init__(
        self,
        param_decls: Sequence[str],
        *,
        setting: tuple[type[BaseModel], str],
        inherit: bool = False,
        default_text: str | None = None,
        **attrs: Any,
    ) -> None:
        if "default" in attrs:
            raise TypeError(f"{param_decls[0]}: the default comes from the field {setting[1]!r}")
        model, path = setting
        field = setting_field(model, path)
        value = setting_default(model, path)
        self.setting, self.inherit, self.default_text = setting, inherit, default_text
        # a bool field is an on/off flag, unless the flag is spelt --x/--no-x
        is_flag = _bare(field.annotation) is bool and not any("/" in d for d in param_decls)
        if is_flag:
            attrs.setdefault("is_flag", True)
        elif not attrs.get("multiple") and _click_type(field) is not None:
            attrs.setdefault("type", _click_type(field))
        stated = default_text if default_text is not None else flag_value(value)
        if attrs.get("multiple"):
            attrs["default"] = ()
        elif inherit or value is None:
            attrs["default"] = None
            if stated is not None and stated != "" and not (is_flag and value is False):
                text = (attrs.get("help") or "").removesuffix(".")
                attrs["help"] = f"{text} (default: {stated}).".lstrip()
        else:
            attrs["default"] = value if is_flag else flag_value(value)
            attrs.setdefault("show_default", default_text if default_text is not None else True)
        super().__init__(param_decls, **attrs)


def setting_option(
    model: type[BaseModel],
    path: str,
    *param_decls: str,
    inherit: bool = False,
    default_text: str | None = None,
    **attrs: Any,
) -> Callable[[F], F]:
    """``@click.option`` for the field ``path`` of ``model`` (see :class:`SettingOption`);
    the flag is ``--`` and the field's name with dashes unless ``param_decls`` are given."""
    decls = param_decls or ("--" + path.rsplit(".", 1)[-1].replace("_", "-"),)
    return click.option(
        *decls,
        cls=SettingOption,
        setting=(model, path),
        inherit=inherit,
        default_text=default_text,
        **attrs,
    )


def setting_overrides(ctx: click.Context, model: type[BaseModel]) -> dict[str, Any]:
    """The values of the command's :class:`SettingOption` flags of ``model`` by dotted key:
    None where a flag that defaults to None was not given, paths as strings, a repeated
    flag's values as a list (None for none)."""
    out: dict[str, Any] = {}
    for param in ctx.command.params:
        if isinstance(param, SettingOption) and param.setting[0] is model and param.name:
            value = ctx.params.get(param.name)
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, tuple):
                value = [str(v) for v in value] or None
            out[param.setting[1]] = value
    return out
