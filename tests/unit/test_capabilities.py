"""The capability constraint language: parsing, matching, and validation (pure)."""

from __future__ import annotations

import math
import operator

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from skyfed.zones.capabilities import (
    MAX_STRING,
    CapabilityError,
    Constraint,
    check_capabilities,
    check_key,
    check_value,
    matches_all,
    parse_constraint,
    parse_constraints,
)

# Integers within +-2**53 convert to floats exactly, so comparisons are exact.
EXACT_INT = 2**53
exact_ints = st.integers(min_value=-EXACT_INT, max_value=EXACT_INT)
finite_floats = st.floats(allow_nan=False, allow_infinity=False)
numbers = st.one_of(exact_ints, finite_floats)


def c(key: str, spec: object) -> Constraint:
    return parse_constraint(key, spec)


# -- parsing: one test per operator ----------------------------------------------


@pytest.mark.parametrize(
    ("spec", "op", "operand"),
    [
        ("= arm64", "=", "arm64"),
        ("=arm64", "=", "arm64"),
        ("!= arm64", "!=", "arm64"),
        ("< 10", "<", "10"),
        ("<= 10", "<=", "10"),
        ("> 10", ">", "10"),
        (">= 4096", ">=", "4096"),
        (">=4096", ">=", "4096"),
        ("  >=   4096  ", ">=", "4096"),
        (">= 2.5", ">=", "2.5"),
        ("< -3", "<", "-3"),
    ],
)
def test_parse_comparison_operators(spec: str, op: str, operand: str) -> None:
    constraint = c("k", spec)
    assert constraint.key == "k"
    assert constraint.op == op
    assert [o.text for o in constraint.operands] == [operand]


def test_parse_range_operand_is_numeric() -> None:
    constraint = c("ram_mb", ">= 4096")
    assert constraint.operands[0].number == 4096.0


def test_parse_exists() -> None:
    constraint = c("gpu", "exists")
    assert constraint.op == "exists"
    assert constraint.operands == ()
    assert c("gpu", "  exists  ").op == "exists"


def test_parse_in_string_form() -> None:
    constraint = c("arch", "in arm64, x86_64")
    assert constraint.op == "in"
    assert [o.text for o in constraint.operands] == ["arm64", "x86_64"]


def test_parse_in_list_form() -> None:
    constraint = c("arch", ["arm64", "x86_64", 7])
    assert constraint.op == "in"
    assert [o.text for o in constraint.operands] == ["arm64", "x86_64", "7"]
    assert constraint.operands[2].number == 7.0


def test_parse_in_tuple_form() -> None:
    assert c("arch", ("a", "b")).op == "in"


@pytest.mark.parametrize(
    ("spec", "text", "number"),
    [
        ("arm64", "arm64", None),
        ("  arm64  ", "arm64", None),
        ("4096", "4096", 4096.0),
        (4096, "4096", 4096.0),
        (2.5, "2.5", 2.5),
        (4.0, "4", 4.0),
        ("in-house", "in-house", None),
        ("exists-x", "exists-x", None),
        ("inbound", "inbound", None),
        ("existsential", "existsential", None),
    ],
)
def test_parse_bare_value_is_equality(spec: object, text: str, number: float | None) -> None:
    constraint = c("k", spec)
    assert constraint.op == "="
    assert len(constraint.operands) == 1
    assert constraint.operands[0].text == text
    assert constraint.operands[0].number == number


def test_bare_value_starting_with_in_is_not_an_in_list() -> None:
    # "in-house" is a label value, not "in" followed by "-house".
    constraint = c("team", "in-house")
    assert constraint.matches({"team": "in-house"})
    assert not constraint.matches({"team": "-house"})


def test_parse_constraints_keeps_every_key() -> None:
    constraints = parse_constraints({"arch": "arm64", "ram_mb": ">= 4096", "gpu": "exists"})
    assert [(x.key, x.op) for x in constraints] == [
        ("arch", "="),
        ("ram_mb", ">="),
        ("gpu", "exists"),
    ]


def test_parse_constraints_empty() -> None:
    assert parse_constraints({}) == []


def test_parse_constraints_at_most_64() -> None:
    assert len(parse_constraints({f"k{i}": "x" for i in range(64)})) == 64
    with pytest.raises(CapabilityError, match="64"):
        parse_constraints({f"k{i}": "x" for i in range(65)})


def test_parse_constraints_reports_the_bad_key() -> None:
    with pytest.raises(CapabilityError, match="ram_mb"):
        parse_constraints({"arch": "arm64", "ram_mb": ">= lots"})


def test_what_str_prints_parses_back() -> None:
    # Messages print constraints; a person pasting one back gets the same constraint.
    for spec in ("in a, b", "in (a, b)", "in [a, b]", "in(a,b)", ">= 4096", "!= x", "exists"):
        once = c("k", spec)
        assert c("k", str(once).removeprefix("k ")) == once


def test_double_equals_is_equality() -> None:
    assert c("ssd", "== 1") == c("ssd", "= 1") == c("ssd", 1)


def test_str_of_constraints() -> None:
    assert str(c("ram_mb", ">= 4096")) == "ram_mb >= 4096"
    assert str(c("gpu", "exists")) == "gpu exists"
    assert str(c("arch", "in a, b")) == "arch in (a, b)"
    assert str(c("arch", "arm64")) == "arch = arm64"


# -- malformed constraints -----------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "spec", "message"),
    [
        ("k", "", "empty"),
        ("k", "   ", "empty"),
        ("k", ">= abc", "needs a number"),
        ("k", "< abc", "needs a number"),
        ("k", "<= x86", "needs a number"),
        ("k", "> ", "needs an operand"),
        ("k", "=", "needs an operand"),
        ("k", "!=", "needs an operand"),
        ("k", ">= inf", "needs a number"),
        ("k", ">= nan", "needs a number"),
        ("k", ">= 1e400", "needs a number"),
        ("k", "in", "1 to 256 values"),
        ("k", "in   ", "1 to 256 values"),
        ("k", "in a,,b", "empty value"),
        ("k", "in a,", "empty value"),
        ("k", [], "1 to 256 values"),
        ("k", list(range(257)), "1 to 256 values"),
        ("k", ["a", ""], "empty value"),
        ("k", ["a", True], "strings and numbers"),
        ("k", ["a", None], "strings and numbers"),
        ("k", ["a", ["b"]], "strings and numbers"),
        ("k", [float("nan")], "finite"),
        ("k", [float("inf")], "finite"),
        ("k", "exists foo", "takes no operand"),
        ("k", True, "string, a number or a list"),
        ("k", False, "string, a number or a list"),
        ("k", None, "string, a number or a list"),
        ("k", {"a": 1}, "string, a number or a list"),
        ("k", float("nan"), "finite"),
        ("k", float("inf"), "finite"),
        ("k", float("-inf"), "finite"),
        pytest.param("k", 10**400, "finite", id="int-too-large-for-a-float"),
        ("k", "x" * 1025, "too long"),
        ("", "x", "capability key"),
        ("a b", "x", "capability key"),
        ("k" * 65, "x", "capability key"),
        ("ä", "x", "capability key"),
        ("k=", "x", "capability key"),
        # An operand that starts like an operator is a slip, not a value.
        ("k", "=> 2", "malformed"),
        ("k", "= = 1", "malformed"),
        ("k", ">> 2", "malformed"),
        ("k", "!= != x", "malformed"),
        ("k", "in []", "1 to 256 values"),
        ("k", "in ()", "1 to 256 values"),
    ],
)
def test_malformed_constraints(key: str, spec: object, message: str) -> None:
    with pytest.raises(CapabilityError, match=message):
        parse_constraint(key, spec)


def test_error_message_names_the_key() -> None:
    with pytest.raises(CapabilityError, match="'ram_mb'") as info:
        parse_constraint("ram_mb", ">= abc")
    assert "'abc'" in str(info.value)


def test_non_string_key_is_rejected() -> None:
    with pytest.raises(CapabilityError):
        parse_constraint(5, "x")  # type: ignore[arg-type]


def test_long_but_allowed_constraint() -> None:
    assert c("k", "x" * 1024).operands[0].text == "x" * 1024


def test_in_list_of_256_is_allowed() -> None:
    assert len(c("k", list(range(256))).operands) == 256


def test_key_charset_accepts_documented_characters() -> None:
    assert c("hw:generation", "8").key == "hw:generation"
    assert c("a.b/c-d_e:F9", "x").key == "a.b/c-d_e:F9"
    assert c("k" * 64, "x").key == "k" * 64


# -- matching ------------------------------------------------------------------------


def test_equal_strings() -> None:
    assert c("arch", "arm64").matches({"arch": "arm64"})
    assert not c("arch", "arm64").matches({"arch": "x86_64"})
    assert not c("arch", "arm64").matches({})
    assert not c("arch", "ARM64").matches({"arch": "arm64"})


def test_equal_numbers_compare_as_numbers() -> None:
    assert c("gpu", "= 8").matches({"gpu": 8})
    assert c("gpu", "= 8").matches({"gpu": 8.0})
    assert c("gpu", "= 8.0").matches({"gpu": 8})
    assert c("gpu", 8).matches({"gpu": 8.0})
    assert c("gpu", 8.0).matches({"gpu": 8})
    assert not c("gpu", "= 8").matches({"gpu": 9})
    assert c("x", "= 1e3").matches({"x": 1000})


def test_number_operand_equals_string_with_same_text() -> None:
    # An operand that reads as a number also equals a string capability with the same text.
    assert c("gen", "= 8").matches({"gen": "8"})
    assert c("gen", 8).matches({"gen": "8"})
    assert c("gen", 2.5).matches({"gen": "2.5"})
    # ... the same text, not the same number.
    assert not c("gen", "= 8").matches({"gen": "8.0"})
    assert not c("gen", "= 8.0").matches({"gen": "8"})
    assert not c("gen", "= 08").matches({"gen": "8"})


def test_string_operand_never_equals_a_number() -> None:
    assert not c("arch", "= arm64").matches({"arch": 0})
    assert not c("arch", "= nan").matches({"arch": float("nan")})


def test_not_equal() -> None:
    assert c("arch", "!= arm64").matches({"arch": "x86_64"})
    assert not c("arch", "!= arm64").matches({"arch": "arm64"})
    assert not c("gpu", "!= 0").matches({"gpu": 0})
    assert not c("gpu", "!= 0").matches({"gpu": "0"})
    assert c("gpu", "!= 0").matches({"gpu": 8})


def test_not_equal_holds_when_key_absent() -> None:
    assert c("gpu", "!= 0").matches({})
    assert c("gpu", "!= 0").matches({"other": 0})


@pytest.mark.parametrize(
    ("spec", "value", "expected"),
    [
        ("< 10", 9, True),
        ("< 10", 10, False),
        ("< 10", 11, False),
        ("<= 10", 10, True),
        ("<= 10", 10.5, False),
        ("> 10", 10, False),
        ("> 10", 10.5, True),
        (">= 10", 10, True),
        (">= 10", 9.999, False),
        (">= -5", -5, True),
        ("< -5", -6, True),
        (">= 2.5", 2.5, True),
        (">= 2.5", 2, False),
    ],
)
def test_range_operators(spec: str, value: float, expected: bool) -> None:
    assert c("k", spec).matches({"k": value}) is expected


@pytest.mark.parametrize("spec", ["< 10", "<= 10", "> 0", ">= 0"])
def test_range_operators_never_match_strings_or_absent_keys(spec: str) -> None:
    assert not c("k", spec).matches({"k": "5"})
    assert not c("k", spec).matches({"k": "abc"})
    assert not c("k", spec).matches({})


def test_in_matches_any_listed_value() -> None:
    constraint = c("arch", "in arm64, x86_64")
    assert constraint.matches({"arch": "arm64"})
    assert constraint.matches({"arch": "x86_64"})
    assert not constraint.matches({"arch": "riscv"})
    assert not constraint.matches({})


def test_in_list_form_mixes_numbers_and_strings() -> None:
    constraint = c("gen", [6, "7", "eight"])
    assert constraint.matches({"gen": 6})
    assert constraint.matches({"gen": 6.0})
    assert constraint.matches({"gen": "6"})
    assert constraint.matches({"gen": 7})
    assert constraint.matches({"gen": "7"})
    assert constraint.matches({"gen": "eight"})
    assert not constraint.matches({"gen": 8})
    assert not constraint.matches({"gen": "8"})


def test_in_string_form_compares_numbers_as_numbers() -> None:
    assert c("gen", "in 6, 7").matches({"gen": 7.0})


def test_exists() -> None:
    assert c("gpu", "exists").matches({"gpu": 0})
    assert c("gpu", "exists").matches({"gpu": ""})
    assert not c("gpu", "exists").matches({"gpus": 1})


def test_matches_all() -> None:
    constraints = parse_constraints({"arch": "arm64", "ram_mb": ">= 4096"})
    assert matches_all(constraints, {"arch": "arm64", "ram_mb": 8192})
    assert not matches_all(constraints, {"arch": "arm64", "ram_mb": 2048})
    assert not matches_all(constraints, {"ram_mb": 8192})
    assert matches_all([], {})


# -- validating capabilities ------------------------------------------------------------


def test_check_capabilities_accepts_strings_and_numbers() -> None:
    caps = {"arch": "arm64", "gpu": 8, "ghz": 2.5, "hw:generation": 7, "s": "x" * MAX_STRING}
    assert check_capabilities(caps) == caps


def test_check_capabilities_returns_a_copy() -> None:
    caps: dict[str, object] = {"arch": "arm64"}
    checked = check_capabilities(caps)
    checked["arch"] = "x"
    assert caps == {"arch": "arm64"}


@pytest.mark.parametrize(
    ("caps", "message"),
    [
        ({"arch": True}, "string or a number"),
        ({"arch": None}, "string or a number"),
        ({"arch": ["a"]}, "string or a number"),
        ({"arch": {"a": 1}}, "string or a number"),
        ({"arch": "x" * (MAX_STRING + 1)}, "longer than 255"),
        ({"ghz": float("nan")}, "finite"),
        ({"ghz": float("inf")}, "finite"),
        pytest.param({"ghz": 10**400}, "finite", id="int-too-large-for-a-float"),
        ({"bad key": 1}, "capability key"),
        ({"": 1}, "capability key"),
        ({"k" * 65: 1}, "capability key"),
    ],
)
def test_check_capabilities_rejects(caps: dict[str, object], message: str) -> None:
    with pytest.raises(CapabilityError, match=message):
        check_capabilities(caps)


def test_check_key_and_value_return_their_input() -> None:
    assert check_key("ram_mb") == "ram_mb"
    assert check_value("ram_mb", 4096) == 4096
    assert check_value("arch", "arm64") == "arm64"


def test_check_value_message_names_key() -> None:
    with pytest.raises(CapabilityError, match="'arch'"):
        check_value("arch", False)


def test_capability_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        check_key("")


# -- properties --------------------------------------------------------------------------

RANGE = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def _text(number: float) -> str:
    return repr(number) if isinstance(number, float) else str(number)


@given(value=numbers, threshold=numbers, op=st.sampled_from(sorted(RANGE)))
def test_range_operator_matches_iff_comparison_holds(
    value: float, threshold: float, op: str
) -> None:
    constraint = c("k", f"{op} {_text(threshold)}")
    assert constraint.matches({"k": value}) is RANGE[op](value, threshold)


@given(value=numbers, threshold=numbers)
def test_greater_equal_matches_iff_value_at_least_threshold(value: float, threshold: float) -> None:
    assert c("k", f">= {_text(threshold)}").matches({"k": value}) is (value >= threshold)


@given(value=numbers, threshold=numbers, op=st.sampled_from(sorted(RANGE)))
def test_range_operator_never_matches_a_string(value: float, threshold: float, op: str) -> None:
    assert not c("k", f"{op} {_text(threshold)}").matches({"k": _text(value)})


@given(value=numbers, other=numbers)
def test_numeric_equality_matches_iff_equal(value: float, other: float) -> None:
    assert c("k", f"= {_text(other)}").matches({"k": value}) is (value == other)
    assert c("k", other).matches({"k": value}) is (value == other)


# An operand may be any text but one starting like an operator ("=> 2" is a slip).
operand_texts = st.one_of(
    st.text(min_size=1, max_size=20).filter(
        lambda s: s.strip() != "" and not s.strip().startswith(("=", "<", ">", "!="))
    ),
    numbers.map(_text),
)
cap_values = st.one_of(st.text(max_size=20), numbers, operand_texts)


@given(operand=operand_texts, value=cap_values)
def test_not_equal_is_negation_of_equal_when_key_present(operand: str, value: object) -> None:
    equal = c("k", f"= {operand}")
    not_equal = c("k", f"!= {operand}")
    assert equal.op == "=" and not_equal.op == "!="
    assert not_equal.matches({"k": value}) is (not equal.matches({"k": value}))


@given(operand=operand_texts)
def test_not_equal_holds_and_equal_fails_without_key(operand: str) -> None:
    assert c("k", f"!= {operand}").matches({})
    assert not c("k", f"= {operand}").matches({})


@given(values=st.lists(operand_texts, min_size=1, max_size=8), value=cap_values)
def test_in_is_the_union_of_equalities(values: list[str], value: object) -> None:
    assume(all("," not in v and v == v.strip() for v in values))
    joined = ", ".join(values)
    # A list written whole in brackets is read without them: "in (a, b)" is a and b.
    assume(not (joined[:1] in "([" and joined[-1:] in ")]"))
    listed = c("k", values)
    text = c("k", "in " + joined)
    any_equal = any(c("k", f"= {v}").matches({"k": value}) for v in values)
    assert listed.matches({"k": value}) is any_equal
    assert text.matches({"k": value}) is any_equal


@given(value=st.text(min_size=1, max_size=30))
def test_a_string_value_matches_itself_as_a_list_member(value: str) -> None:
    assert c("k", [value]).matches({"k": value})


@given(value=st.one_of(st.text(max_size=MAX_STRING), numbers))
def test_exists_matches_any_present_value(value: object) -> None:
    assert c("k", "exists").matches({"k": value})
    assert not c("k", "exists").matches({"j": value})


@given(spec=st.text(max_size=40))
@settings(max_examples=300)
def test_any_string_either_parses_or_raises_capability_error(spec: str) -> None:
    try:
        constraint = parse_constraint("k", spec)
    except CapabilityError as exc:
        assert str(exc)
        return
    assert constraint.key == "k"
    assert constraint.op in ("=", "!=", "<", "<=", ">", ">=", "in", "exists")
    for operand in constraint.operands:
        assert operand.number is None or math.isfinite(operand.number)
    if constraint.op in RANGE:
        assert constraint.operands[0].number is not None
