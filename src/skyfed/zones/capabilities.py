"""Typed capabilities and the constraint language that queries them (pure).

A capability is a key with a string or a number. A constraint compares one key:

    {"arch": "arm64"}          equal (a bare value)
    {"ram_mb": ">= 4096"}      = != < <= > >= followed by an operand
    {"arch": "in arm64, x86_64"} or {"arch": ["arm64", "x86_64"]}
    {"gpu": "exists"}

Range comparisons need a number on both sides. Equality compares numbers as
numbers and strings as strings; an operand that reads as a number also equals
a string capability with the same text. `!=` holds when the key is absent.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from skyfed.schema_types import KEY_PATTERN

Value = str | int | float
Capabilities = Mapping[str, Value]

KEY_RE = re.compile(KEY_PATTERN)
MAX_STRING = 255
OPERATORS = ("=", "!=", "<", "<=", ">", ">=", "in", "exists")
# "in" and "exists" are operators only as whole words: "in-house" is a bare value.
# "==" is "=" (as programmers write it).
_EXPR_RE = re.compile(
    r"^\s*(!=|<=|>=|==|=|<|>|in(?=\s|\(|\[|$)|exists(?=\s|$))\s*(.*?)\s*$", re.DOTALL
)
# An operand that starts like an operator: "=> 2", "= = 1", "<< 3", "!= != 1" are
# typing slips, refused rather than compared as text ("!x" is a value).
_STRAY_OPERATOR = re.compile(r"^([=<>]|!=)")
# The list of an "in", as written bare or as the API prints it: "a, b", "(a, b)", "[a, b]".
_IN_BRACKETS = re.compile(r"^[(\[](.*)[)\]]$", re.DOTALL)
_RANGE_OPS = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


class CapabilityError(ValueError):
    """A capability or constraint that cannot be understood; the message says why."""


@dataclass(frozen=True, slots=True)
class Operand:
    text: str
    number: float | None

    @classmethod
    def of(cls, value: Value) -> Operand:
        if isinstance(value, bool):
            raise CapabilityError("true/false is not a capability value; use a string or 0/1")
        if isinstance(value, int | float):
            if not is_finite(value):
                raise CapabilityError("numbers must be finite")
            return cls(_number_text(value), float(value))
        return cls(value, _as_number(value))

    def equals(self, value: Value) -> bool:
        if isinstance(value, str):
            return value == self.text
        return self.number is not None and float(value) == self.number


@dataclass(frozen=True, slots=True)
class Constraint:
    key: str
    op: str
    operands: tuple[Operand, ...] = ()

    def matches(self, caps: Capabilities) -> bool:
        value = caps.get(self.key)
        if self.op == "exists":
            return value is not None
        if value is None:
            return self.op == "!="
        if self.op == "=":
            return self.operands[0].equals(value)
        if self.op == "!=":
            return not self.operands[0].equals(value)
        if self.op == "in":
            return any(o.equals(value) for o in self.operands)
        if isinstance(value, str):
            return False
        number = self.operands[0].number
        assert number is not None  # parse() guarantees a number for range operators
        return bool(_RANGE_OPS[self.op](float(value), number))

    def __str__(self) -> str:
        if self.op == "exists":
            return f"{self.key} exists"
        if self.op == "in":
            return f"{self.key} in ({', '.join(o.text for o in self.operands)})"
        return f"{self.key} {self.op} {self.operands[0].text}"


def _as_number(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def is_finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _number_text(value: int | float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def check_key(key: str) -> str:
    if not isinstance(key, str) or not KEY_RE.match(key):
        raise CapabilityError(
            f"capability key {key!r} must be 1-64 characters of letters, digits and _.:/-"
        )
    return key


def check_value(key: str, value: object) -> Value:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise CapabilityError(f"capability {key!r} must be a string or a number")
    if isinstance(value, str) and len(value) > MAX_STRING:
        raise CapabilityError(f"capability {key!r} is longer than {MAX_STRING} characters")
    if isinstance(value, str) and "\x00" in value:
        raise CapabilityError(f"capability {key!r} contains a NUL character")
    if isinstance(value, int | float) and not is_finite(value):
        raise CapabilityError(f"capability {key!r} must be a finite number")
    return value


def check_capabilities(caps: Mapping[str, object]) -> dict[str, Value]:
    return {check_key(k): check_value(k, v) for k, v in caps.items()}


def parse_constraint(key: str, spec: object) -> Constraint:
    check_key(key)
    if isinstance(spec, list | tuple):
        return _parse_in(key, spec)
    if isinstance(spec, bool) or not isinstance(spec, str | int | float):
        raise CapabilityError(f"constraint on {key!r} must be a string, a number or a list")
    if not isinstance(spec, str):
        return Constraint(key, "=", (Operand.of(spec),))
    if len(spec) > 1024:
        raise CapabilityError(f"constraint on {key!r} is too long")
    match = _EXPR_RE.match(spec)
    if match is None:
        if not spec.strip():
            raise CapabilityError(f"constraint on {key!r} is empty")
        return Constraint(key, "=", (Operand.of(spec.strip()),))
    op, rest = match.group(1), match.group(2)
    if op == "==":
        op = "="
    if _STRAY_OPERATOR.match(rest):
        raise CapabilityError(
            f"malformed constraint on {key!r}: {spec!r}; write one of "
            f"{', '.join(OPERATORS)} then the operand, e.g. '>= 2'"
        )
    if op == "exists":
        if rest:
            raise CapabilityError(f"'exists' on {key!r} takes no operand, got {rest!r}")
        return Constraint(key, "exists")
    if op == "in":
        bracketed = _IN_BRACKETS.match(rest)
        if bracketed is not None:
            rest = bracketed.group(1).strip()
        return _parse_in(key, [part.strip() for part in rest.split(",")] if rest else [])
    if not rest:
        raise CapabilityError(f"'{op}' on {key!r} needs an operand")
    operand = Operand.of(rest)
    if op in _RANGE_OPS and operand.number is None:
        raise CapabilityError(f"'{op}' on {key!r} needs a number, got {rest!r}")
    return Constraint(key, op, (operand,))


def _parse_in(key: str, items: Sequence[object]) -> Constraint:
    if not items or len(items) > 256:
        raise CapabilityError(f"'in' on {key!r} needs 1 to 256 values")
    operands = []
    for item in items:
        if isinstance(item, str) and not item:
            raise CapabilityError(f"'in' on {key!r} has an empty value")
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise CapabilityError(f"'in' on {key!r} takes strings and numbers")
        operands.append(Operand.of(item))
    return Constraint(key, "in", tuple(operands))


def parse_constraints(spec: Mapping[str, object]) -> list[Constraint]:
    if len(spec) > 64:
        raise CapabilityError("at most 64 constraints")
    return [parse_constraint(key, value) for key, value in spec.items()]


def matches_all(constraints: Iterable[Constraint], caps: Capabilities) -> bool:
    return all(c.matches(caps) for c in constraints)
