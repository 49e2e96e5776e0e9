"""The harness of Swift's functional tests (tests/swift_functests.py): its JUnit reading,
its expected-failures list and the test.conf it writes."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest

from tests.swift_functests import (
    Outcome,
    Run,
    SwiftUser,
    compare,
    func_test_conf,
    load_expected,
    parse_junit,
)

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest">
<testcase classname="test.functional.tests.TestAccount" name="testA">
  <error message="failed on setup with &quot;ResponseError: 404&quot;">trace</error>
</testcase>
<testcase classname="test.functional.test_object.TestObject" name="test_ok"/>
<testcase classname="test.functional.test_object.TestObject" name="test_last">
  <failure message="AssertionError: 404 != 204">trace</failure>
</testcase>
<testcase classname="test.functional.test_object.TestObject" name="test_last">
  <error message="failed on teardown with &quot;boom&quot;">trace</error>
</testcase>
<testcase classname="test.functional.test_dlo.TestDlo" name="test_skip">
  <skipped type="pytest.skip" message="SLO not enabled">skip</skipped>
</testcase>
</testsuite></testsuites>
"""
FILES = ("tests.py", "test_object.py", "test_dlo.py")


def run_of(tmp_path: Path) -> Run:
    junit = tmp_path / "junit.xml"
    junit.write_text(JUNIT)
    return Run(parse_junit(junit, FILES), FILES, 1, 1.0, tmp_path / "log")


def test_outcomes_by_node_id_a_failure_over_a_later_teardown_error(tmp_path: Path) -> None:
    outcomes = run_of(tmp_path).outcomes
    assert outcomes == {
        "test/functional/tests.py::TestAccount::testA": Outcome(
            "error", 'failed on setup with "ResponseError: 404"'
        ),
        "test/functional/test_object.py::TestObject::test_ok": Outcome("passed"),
        "test/functional/test_object.py::TestObject::test_last": Outcome(
            "failed", "AssertionError: 404 != 204"
        ),
        "test/functional/test_dlo.py::TestDlo::test_skip": Outcome("skipped", "SLO not enabled"),
    }
    counts = run_of(tmp_path).counts()
    assert counts["test_object.py"] == {"passed": 1, "failed": 1}


def test_compare_keeps_the_list_honest(tmp_path: Path) -> None:
    result = run_of(tmp_path)
    expected = {
        "test/functional/tests.py::TestAccount::testA": "account GET missing",
        "test/functional/test_object.py::TestObject::test_last": "account POST missing",
    }
    assert compare(result, expected) == []
    problems = compare(
        result,
        {
            "test/functional/tests.py::TestAccount::testA": "account GET missing",
            "test/functional/test_object.py::TestObject::test_ok": "was broken",
            "test/functional/test_dlo.py::TestDlo::gone": "renamed",
            "test/functional/test_slo.py::TestSlo::a": "not among the files run",
        },
    )
    assert problems == [
        "unexpected failed: test/functional/test_object.py::TestObject::test_last: "
        "AssertionError: 404 != 204",
        "expected to fail (renamed), not run: test/functional/test_dlo.py::TestDlo::gone",
        "expected to fail (was broken), passed: "
        "test/functional/test_object.py::TestObject::test_ok",
    ]


def test_a_race_may_pass_but_not_go_missing(tmp_path: Path) -> None:
    result = run_of(tmp_path)
    expected = {
        "test/functional/tests.py::TestAccount::testA": "account GET missing",
        "test/functional/test_object.py::TestObject::test_last": "account POST missing",
        "test/functional/test_object.py::TestObject::test_ok": "(a race) 400 or 411",
    }
    assert compare(result, expected) == []
    expected["test/functional/test_dlo.py::TestDlo::gone"] = "(a race) renamed"
    assert compare(result, expected) == [
        "expected to fail ((a race) renamed), not run: test/functional/test_dlo.py::TestDlo::gone"
    ]


def test_nothing_ran_is_a_problem(tmp_path: Path) -> None:
    empty = Run({}, FILES, 5, 1.0, tmp_path / "log", problems=["no test ran (see log)"])
    assert compare(empty, {}) == ["no test ran (see log)"]


def test_expected_list_format(tmp_path: Path) -> None:
    listed = tmp_path / "expected.txt"
    listed.write_text("# comment\n\ntest/functional/tests.py::T::a  # account GET missing\n")
    assert load_expected(listed) == {"test/functional/tests.py::T::a": "account GET missing"}
    listed.write_text("test/functional/tests.py::T::a\n")
    with pytest.raises(ValueError, match="reason"):
        load_expected(listed)
    listed.write_text("t::a  # one\nt::a  # two\n")
    with pytest.raises(ValueError, match="twice"):
        load_expected(listed)


def test_conf_reads_back_as_written() -> None:
    main = SwiftUser.parse("test:tester:pa%(ss)s:word")
    conf = func_test_conf(
        "http://127.0.0.1:1/auth/v1.0",
        main,
        SwiftUser("test2", "tester2", "p2"),
        reader=SwiftUser("test", "tester3", "p3"),
    )
    parser = configparser.ConfigParser()  # interpolating, as Swift's readconf may
    parser.read_string(conf)
    section = parser["func_test"]
    assert (section["account"], section["username"], section["password"]) == (
        "test",
        "tester",
        "pa%(ss)s:word",
    )
    assert section["username3"] == "tester3" and "account5" not in section
    with pytest.raises(ValueError):
        func_test_conf("u", main, main, reader=SwiftUser("other", "x", "y"))
