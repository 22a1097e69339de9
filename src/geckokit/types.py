"""Small shared types."""

from __future__ import annotations

import re
from enum import Enum
from typing import TypeVar

E = TypeVar("E", bound="ClosedSet")


class ClosedSet(str, Enum):
    """A closed set of string options; :meth:`parse` names the valid values on error."""

    @classmethod
    def parse(cls: type[E], value: str) -> E:
        try:
            return cls(value)
        except ValueError:
            valid = ", ".join(member.value for member in cls)
            what = re.sub(r"(?<!^)(?=[A-Z])", " ", cls.__name__.replace("Choice", "")).lower()
            raise ValueError(f"unknown {what} {value!r}; valid: {valid}") from None
