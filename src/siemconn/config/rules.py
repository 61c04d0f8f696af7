"""The validation vocabulary the config models share: one rule per option, declared beside its field.

A rule is a pydantic before-validator: it sees the raw JSON value, so it can refuse what strict mode
would coerce (a bool where an integer is due) and name the option in our words. A refusal is a
`PydanticCustomError` whose type is the rule's kind and whose message says what is expected; the
loader prints both unchanged, so a kind or message is part of the output and must not drift.
`checked` builds the rules that only accept or refuse; rules that also normalise a value (a case-
folded protocol, a facility name) are plain functions wrapped in `BeforeValidator`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, BeforeValidator, ConfigDict
from pydantic_core import PydanticCustomError

__all__ = ["Check", "Strict", "checked", "custom_error", "int_in", "is_int", "is_number", "number_in"]

Check = Callable[[Any], bool]


class Strict(BaseModel):
    """The base of config.json's objects: unknown keys refused, no coercion, immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def custom_error(kind: str, msg: str, **ctx: Any) -> PydanticCustomError:
    """The error a rule raises: `kind` is its type, `msg` (formatted with `ctx`) what the loader prints."""
    return PydanticCustomError(kind, msg, ctx)


def checked(kind: str, msg: str, ok: Check, *, nullable: bool = False) -> BeforeValidator:
    """A rule that passes a value `ok` accepts (and None when `nullable`) unchanged, else raises `kind`."""

    def check(v: Any) -> Any:
        if (nullable and v is None) or ok(v):
            return v
        raise custom_error(kind, msg)

    return BeforeValidator(check)


def is_int(v: Any) -> bool:
    """True for a JSON integer (a bool is not one, although Python's bool is an int)."""
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    """True for a JSON number, integer or not (never a bool)."""
    return isinstance(v, int | float) and not isinstance(v, bool)


def int_in(lo: int, hi: int | None = None) -> Check:
    """Accepts an integer in lo..hi (no upper bound when `hi` is None)."""
    return lambda v: is_int(v) and lo <= v and (hi is None or v <= hi)


def number_in(lo: float, hi: float) -> Check:
    """Accepts a number in lo..hi, bounds included (NaN never is)."""
    return lambda v: is_number(v) and lo <= v <= hi
