"""OpenStack Swift's own functional tests (swift 2.38.3's `test/functional`) against a
Swift endpoint: a skyfed zone, or any Swift cluster with a test.conf.

Used by tests/integration/test_swift_functests.py (a zone over two real clusters) and
by scripts/swift-functests (any zone, given its accounts). The tests ship only in
Swift's source package: `swift_tests()` downloads it once per machine into a cache
outside git (SKYFED_TEST_SWIFT_SRC, else ~/.cache/skyfed/swift-src) and keeps its
`test/` tree. `run()` starts them in a subprocess with this interpreter (whose
environment has swift and pytest) and reads each test's outcome from a JUnit report.

The tests delete every container of their accounts first: give them accounts that
hold nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

SWIFT_VERSION = "2.38.3"
# SKYFED_TEST_*: tests/conftest.py leaves these in the environment.
SRC_ENV = "SKYFED_TEST_SWIFT_SRC"
FUNCTIONAL = "test/functional"
# The Swift API's core: what every Swift serves.
CORE_FILES = (
    "tests.py",  # pytest does not collect it by itself (not test_*.py): named here
    "test_account.py",
    "test_container.py",
    "test_object.py",
    "test_dlo.py",
    "test_protocol.py",
)
# Middleware: each file's tests skip unless the endpoint's /info advertises the feature
# (staticweb's mostly need domain_remap too). Not run: s3api (another API, and boto),
# test_access_control.py (Keystone's: it skips without keystoneclient).
FEATURE_FILES = (
    "test_slo.py",
    "test_symlink.py",
    "test_versioned_writes.py",
    "test_object_versioning.py",
    "test_tempurl.py",
    "test_staticweb.py",
    "test_domain_remap.py",
)
FILES = CORE_FILES + FEATURE_FILES
FAILED = ("failed", "error")
# A bound per test in the subprocess: one request that never ends must not hold the run.
PER_TEST_TIMEOUT = 120


def cache_dir() -> Path:
    if os.environ.get(SRC_ENV):
        return Path(os.environ[SRC_ENV]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "skyfed" / "swift-src"


def swift_tests(cache: Path | None = None, python: str = sys.executable) -> Path:
    """The directory holding swift SWIFT_VERSION's `test/` tree: extracted from its sdist
    into `cache` on the first call on this machine, reused afterwards (a lock keeps
    concurrent callers from downloading it twice)."""
    cache = cache or cache_dir()
    root = cache / f"swift-{SWIFT_VERSION}"
    if (root / FUNCTIONAL / "__init__.py").is_file():
        return root
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (root / FUNCTIONAL / "__init__.py").is_file():
            return root
        with tempfile.TemporaryDirectory(dir=cache) as scratch:
            pip = [python, "-m", "pip", "download", f"swift=={SWIFT_VERSION}"]
            download = subprocess.run(
                [*pip, "--no-binary", ":all:", "--no-deps", "--quiet", "-d", scratch],
                capture_output=True,
                text=True,
                timeout=600,
            )
            if download.returncode != 0:
                raise RuntimeError(f"{' '.join(pip[2:])} failed:\n{download.stderr}")
            sdist = Path(scratch) / f"swift-{SWIFT_VERSION}.tar.gz"
            staged = Path(scratch) / "tree"
            _extract_tests(sdist, staged)
            # An ini file of its own: pytest must not take one from a directory above.
            (staged / "pytest.ini").write_text("[pytest]\n")
            shutil.rmtree(root, ignore_errors=True)  # a partial tree of an older run
            staged.rename(root)
    return root


def _extract_tests(sdist: Path, into: Path) -> None:
    """Only `test/` (the rest would shadow the installed `swift` package)."""
    prefix = f"swift-{SWIFT_VERSION}/"
    with tarfile.open(sdist) as tar:
        members = []
        for member in tar.getmembers():
            if member.name.startswith(prefix + "test/"):
                member.name = member.name.removeprefix(prefix)
                members.append(member)
        if not members:
            raise RuntimeError(f"{sdist.name} has no test/ tree")
        tar.extractall(into, members=members, filter="data")


@dataclass(frozen=True)
class SwiftUser:
    """A Swift v1 login: account (a skyfed project's name), user, password."""

    account: str
    user: str
    password: str

    @classmethod
    def parse(cls, text: str) -> SwiftUser:
        """`account:user:password` (the password may hold colons)."""
        account, _, rest = text.partition(":")
        user, _, password = rest.partition(":")
        if not (account and user and password):
            raise ValueError(f"expected account:user:password, got {text.split(':')[0]}:...")
        return cls(account, user, password)


def func_test_conf(
    auth_uri: str,
    main: SwiftUser,
    second: SwiftUser,
    *,
    reader: SwiftUser | None = None,
    service: SwiftUser | None = None,
    service_prefix: str | None = None,
    reseller_admin: SwiftUser | None = None,
) -> str:
    """Swift's test.conf ([func_test]) for these logins. `main` and `second` own their
    accounts (two different ones); the tests of the others skip without them: `reader`,
    another user of `main`'s account without rights of its own (ACLs); `service`, a user
    of a third account, with the reseller prefix of service accounts (service tokens);
    `reseller_admin`, who may set account quotas."""
    if reader is not None and reader.account != main.account:
        raise ValueError("the reader must be a user of the main account")
    options = {"auth_uri": auth_uri}
    numbered = {"": main, "2": second, "5": service, "6": reseller_admin}
    for n, login in numbered.items():
        if login is not None:
            options |= {
                f"account{n}": login.account,
                f"username{n}": login.user,
                f"password{n}": login.password,
            }
    if reader is not None:
        options |= {"username3": reader.user, "password3": reader.password}
    if service is not None and service_prefix:
        options["service_prefix"] = service_prefix
    options |= {"collate": "C", "insecure": "no", "storage_domain": ""}
    lines = ["[func_test]", *(f"{k} = {_conf_value(v)}" for k, v in options.items())]
    return "\n".join([*lines, "", "[swift-constraints]", ""])


def _conf_value(value: str) -> str:
    """As Swift's readconf reads it back: it interpolates only values holding "%("."""
    if "\n" in value or value != value.strip():
        raise ValueError("test.conf values cannot hold line breaks or edge spaces")
    return value.replace("%", "%%") if "%(" in value else value


@dataclass(frozen=True)
class Outcome:
    status: str  # passed, failed, error, skipped
    message: str = ""  # the first line of why it failed or skipped


@dataclass
class Run:
    outcomes: dict[str, Outcome]
    files: tuple[str, ...]
    returncode: int
    seconds: float
    log: Path
    problems: list[str] = field(default_factory=list)

    def failed(self) -> dict[str, Outcome]:
        return {k: v for k, v in self.outcomes.items() if v.status in FAILED}

    def counts(self) -> dict[str, Counter[str]]:
        """Per file: how many passed, failed, errored and skipped."""
        per_file: dict[str, Counter[str]] = {name: Counter() for name in self.files}
        for test_id, outcome in self.outcomes.items():
            per_file.setdefault(_file_of(test_id), Counter())[outcome.status] += 1
        return per_file

    def summary(self) -> str:
        rows = [f"{'file':<28}{'passed':>8}{'failed':>8}{'error':>8}{'skipped':>8}"]
        total: Counter[str] = Counter()
        for name, counts in self.counts().items():
            total += counts
            rows.append(
                f"{name:<28}{counts['passed']:>8}{counts['failed']:>8}"
                f"{counts['error']:>8}{counts['skipped']:>8}"
            )
        rows.append(
            f"{'total':<28}{total['passed']:>8}{total['failed']:>8}"
            f"{total['error']:>8}{total['skipped']:>8}"
        )
        rows.append(f"in {self.seconds:.0f} s (exit code {self.returncode}); output: {self.log}")
        return "\n".join(rows)


def _file_of(test_id: str) -> str:
    return test_id.split("::", 1)[0].removeprefix(FUNCTIONAL + "/")


async def run(
    src: Path,
    conf: Path,
    out_dir: Path,
    files: Sequence[str] = FILES,
    *,
    python: str = sys.executable,
    extra_args: Sequence[str] = (),
    timeout: float = 3600.0,
) -> Run:
    """Run `files` (names in test/functional) against the endpoint of `conf` in a
    subprocess; its output goes to out_dir/functests.log, its report to
    out_dir/junit.xml. Never falls back to an in-process Swift."""
    out_dir.mkdir(parents=True, exist_ok=True)
    junit, log = out_dir / "junit.xml", out_dir / "functests.log"
    junit.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWIFT_TEST_")}
    env |= {
        "SWIFT_TEST_CONFIG_FILE": str(conf.absolute()),
        "SWIFT_TEST_IN_PROCESS": "0",  # without it, a bad conf tests an in-process Swift
        # Only the plugins named here: the environment's others are not Swift's.
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
    }
    args = [
        python,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-p",
        "pytest_timeout",
        f"--timeout={PER_TEST_TIMEOUT}",
        "-q",
        "-rfs",
        f"--junitxml={junit.absolute()}",
        *extra_args,
        *(f"{FUNCTIONAL}/{name}" for name in files),
    ]
    started = time.monotonic()
    with open(log, "wb") as output:
        process = await asyncio.create_subprocess_exec(
            *args, cwd=src, env=env, stdout=output, stderr=subprocess.STDOUT
        )
        try:
            returncode = await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            returncode = -9
        finally:
            if process.returncode is None:  # timed out, or this task was cancelled
                process.kill()
                await process.wait()
    seconds = time.monotonic() - started
    outcomes = parse_junit(junit, files) if junit.is_file() else {}
    result = Run(outcomes, tuple(files), returncode, seconds, log)
    if returncode not in (0, 1):  # 1: some tests failed; anything else: the run did not
        result.problems.append(f"pytest exited with {returncode} (see {log})")
    if not outcomes:
        result.problems.append(f"no test ran (see {log})")
    for name, counts in result.counts().items():
        if not counts and not extra_args:  # (-k may deselect a file's tests)
            result.problems.append(f"no test of {name} ran")
    return result


def parse_junit(path: Path, files: Sequence[str] = FILES) -> dict[str, Outcome]:
    """Each test's outcome by its pytest node id (test/functional/FILE::Class::test).
    A test reported twice keeps the worse: a failure of its own over an error of the
    teardown after it (tearDownModule's errors land on a module's last test)."""
    modules = {f"{FUNCTIONAL}/{name}".removesuffix(".py").replace("/", "."): name for name in files}
    outcomes: dict[str, Outcome] = {}
    rank = {"passed": 0, "skipped": 1, "error": 2, "failed": 3}
    for case in ET.parse(path).getroot().iter("testcase"):
        test_id = _node_id(case.get("classname", ""), case.get("name", ""), modules)
        outcome = Outcome("passed")
        for status in ("error", "failure", "skipped"):
            found = case.find(status)
            if found is not None:
                text = found.get("message") or (found.text or "")
                lines = text.strip().splitlines()
                outcome = Outcome(
                    "failed" if status == "failure" else status, lines[0] if lines else ""
                )
                break
        known = outcomes.get(test_id)
        if known is None or rank[outcome.status] > rank[known.status]:
            outcomes[test_id] = outcome
    return outcomes


def _node_id(classname: str, name: str, modules: Mapping[str, str]) -> str:
    for module, filename in modules.items():
        if classname == module:
            return f"{FUNCTIONAL}/{filename}::{name}"
        if classname.startswith(module + "."):
            classes = classname.removeprefix(module + ".").replace(".", "::")
            return f"{FUNCTIONAL}/{filename}::{classes}::{name}"
    return f"{classname}::{name}" if classname else name  # a collection error, say


# An expected failure whose reason starts so may pass too: its outcome is a race.
RACE = "(a race)"


def load_expected(path: Path) -> dict[str, str]:
    """Expected failures: one `test id  # reason` a line; blank lines and lines starting
    with # are comments."""
    expected: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        test_id, sep, reason = line.partition("  # ")
        if not sep or not reason.strip():
            raise ValueError(f"{path}:{number}: expected 'test id  # reason'")
        if test_id.strip() in expected:
            raise ValueError(f"{path}:{number}: {test_id.strip()} listed twice")
        expected[test_id.strip()] = reason.strip()
    return expected


def compare(result: Run, expected: Mapping[str, str]) -> list[str]:
    """What makes the run a failure: problems running it, a failure not in `expected`,
    and a test in `expected` of a file that ran that did not fail (it passed, skipped or
    did not run: the list must say what fails today, no more)."""
    problems = list(result.problems)
    failed = result.failed()
    for test_id, outcome in sorted(failed.items()):
        if test_id not in expected:
            problems.append(f"unexpected {outcome.status}: {test_id}: {outcome.message[:200]}")
    for test_id, reason in sorted(expected.items()):
        if test_id not in failed and _file_of(test_id) in result.files:
            status = result.outcomes[test_id].status if test_id in result.outcomes else "not run"
            if reason.startswith(RACE) and status == "passed":
                continue  # it fails or passes as a race between the HTTP server and skyfed goes
            problems.append(f"expected to fail ({reason}), {status}: {test_id}")
    return problems


def expected_lines(result: Run) -> Iterator[str]:
    """The run's failures as lines of an expected-failures file, each failure's first
    line as its reason: a draft for someone to write the causes in."""
    for test_id, outcome in sorted(result.failed().items()):
        yield f"{test_id}  # {outcome.message[:120] or outcome.status}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="swift-functests",
        description="Run Swift's own functional tests against a skyfed zone (or any Swift). "
        "WARNING: they delete every container of the accounts given.",
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--zone", help="the zone's URL (auth at <zone>/auth/v1.0)")
    target.add_argument("--test-conf", type=Path, help="an existing test.conf")
    parser.add_argument("--user", type=SwiftUser.parse, help="account:user:password, owner")
    parser.add_argument(
        "--user2", type=SwiftUser.parse, help="account:user:password, owner of another account"
    )
    parser.add_argument(
        "--user3", type=SwiftUser.parse, help="account:user:password, --user's account, no rights"
    )
    parser.add_argument(
        "--user5", type=SwiftUser.parse, help="account:user:password, for service tokens"
    )
    parser.add_argument("--service-prefix", help="with --user5: the reseller prefix, e.g. SERVICE")
    parser.add_argument(
        "--user6", type=SwiftUser.parse, help="account:user:password, a reseller admin"
    )
    parser.add_argument("--out", type=Path, default=Path("swift-functests"), help="output dir")
    parser.add_argument("--expected", type=Path, help="an expected-failures file to compare with")
    parser.add_argument(
        "--write-expected", type=Path, help="write the run's failures as an expected-failures file"
    )
    parser.add_argument("--pytest", default="", help="more pytest arguments, e.g. '-k Object'")
    parser.add_argument("files", nargs="*", default=list(FILES), help="files of test/functional")
    args = parser.parse_args(argv)
    if args.zone and not (args.user and args.user2):
        parser.error("--zone needs --user and --user2")
    args.out.mkdir(parents=True, exist_ok=True)
    conf = args.test_conf
    if conf is None:
        conf = args.out / "test.conf"
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # passwords
        with os.fdopen(fd, "w") as out:
            out.write(
                func_test_conf(
                    args.zone.rstrip("/") + "/auth/v1.0",
                    args.user,
                    args.user2,
                    reader=args.user3,
                    service=args.user5,
                    service_prefix=args.service_prefix,
                    reseller_admin=args.user6,
                )
            )
    src = swift_tests()
    result = asyncio.run(run(src, conf, args.out, args.files, extra_args=shlex.split(args.pytest)))
    if args.write_expected:
        args.write_expected.write_text("".join(f"{line}\n" for line in expected_lines(result)))
    problems = compare(result, load_expected(args.expected) if args.expected else {})
    for problem in problems:
        print(problem)
    print(result.summary())
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
