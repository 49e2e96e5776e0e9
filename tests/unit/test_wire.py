"""Reading answers: whatever a peer sends, the caller gets JSON or one `SkyfedError`,
bounded, printable, and never quoting an answer that is not skyfed's."""

from __future__ import annotations

import gzip
import json

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from skyfed.client import SkyfedClient
from skyfed.wire import (
    MAX_CODE,
    MAX_ERROR_BODY,
    MAX_MESSAGE,
    SkyfedError,
    error_body,
    error_from,
    read_answer,
)


def raised(
    status: int, content: bytes, content_type: str | None = "application/json"
) -> SkyfedError:
    with pytest.raises(SkyfedError) as caught:
        read_answer(status, content, content_type)
    assert type(caught.value) is SkyfedError
    return caught.value


def test_the_error_shape_round_trips() -> None:
    body = json.dumps(error_body("not_found", "server 'x' not found", [{"loc": ["id"]}]))
    error = raised(404, body.encode())
    assert (error.status, error.code, error.message) == (404, "not_found", "server 'x' not found")
    assert error.details == [{"loc": ["id"]}]
    assert error_body("conflict", "no") == {"error": {"code": "conflict", "message": "no"}}


def test_success_answers() -> None:
    assert read_answer(200, b'{"a": 1}') == {"a": 1}
    assert read_answer(201, b"[1, 2]") == [1, 2]
    assert read_answer(204, b"") is None
    assert read_answer(200, b"") is None
    assert read_answer(200, b"<html>") is None  # not JSON: the caller finds no fields
    assert read_answer(200, b"[" * 100_000) is None  # nested past the parser's depth


HOSTILE = [
    b"",
    b"<html>AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI</html>",
    b"\xff\xfe\x00garbage",  # not UTF-8
    b"[" * 100_000,  # RecursionError in json.loads
    b'{"error": ' * 50_000,
    b'{"error": "nope"}',
    b'{"error": ["not_found", "x"]}',
    b'{"error": null}',
    b'{"error": {}}',
    b'{"error": {"code": {"a": 1}, "message": ["x", "y"]}}',
    b'{"error": {"code": "", "message": null}}',
    b'{"error": {"code": 42, "message": 3.5}}',
    b'{"error": {"code": "x", "message": "y", "details": ' + b"[" * 100_000 + b"]}}",
    json.dumps({"error": {"code": "c" * 1_000_000, "message": "m" * 1_000_000}}).encode(),
    json.dumps(
        {"error": {"code": "bad\x1b[2J", "message": "line\r\n\x1b]0;pwned\x07 done"}}
    ).encode(),
    b"NaN",
    b'{"error": {"code": "x", "message": NaN}}',
]


@pytest.mark.parametrize("content", HOSTILE, ids=lambda c: repr(c[:24]))
@pytest.mark.parametrize("status", [302, 400, 401, 500, 503])
def test_hostile_error_bodies(content: bytes, status: int) -> None:
    error = raised(status, content)
    assert error.status == status
    assert 0 < len(error.code) <= MAX_CODE and error.code.isprintable()
    assert len(error.message) <= MAX_MESSAGE and error.message.isprintable()
    assert b"wJalrXUtnFEMI" not in str(error).encode()


def test_what_is_kept_of_a_hostile_error() -> None:
    error = raised(
        400, json.dumps({"error": {"code": "bad\x1b[2J", "message": "a\nb\x07"}}).encode()
    )
    assert (error.code, error.message) == ("bad [2J", "a b ")
    assert raised(400, b'{"error": {"code": 42, "message": 3.5}}').code == "error"
    assert raised(400, b'{"error": {"code": 42, "message": 3.5}}').message == "3.5"
    assert raised(400, b'{"error": {"code": "x", "message": ["y"]}}').message == ""


def test_a_foreign_answer_is_described_not_quoted() -> None:
    error = raised(502, b"<html>secret</html>", "text/html; charset=utf-8")
    assert (error.code, error.message) == (
        "http_error",
        "HTTP 502: not a skyfed answer (text/html, 19 bytes)",
    )
    hostile_type = "text/\x1b[31m" + "x" * 10_000
    error = raised(500, b"", hostile_type)
    assert error.message.isprintable() and len(error.message) < 200
    assert "no content type" in raised(500, b"", None).message


def test_a_huge_error_body_is_not_parsed() -> None:
    filler = "x" * MAX_ERROR_BODY
    content = json.dumps({"error": {"code": "big", "message": "m", "details": filler}}).encode()
    error = error_from(400, content, "application/json")
    assert error.code == "http_error" and error.details is None


@given(status=st.integers(100, 599).filter(lambda s: not 200 <= s < 300), content=st.binary())
def test_any_bytes_make_one_skyfed_error(status: int, content: bytes) -> None:
    error = error_from(status, content, "application/json")
    assert type(error) is SkyfedError and error.status == status
    assert len(error.code) <= MAX_CODE and len(error.message) <= MAX_MESSAGE


@given(
    error=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
        max_leaves=20,
    )
)
def test_any_json_in_the_error_field_makes_one_skyfed_error(error: object) -> None:
    content = json.dumps({"error": error}).encode()
    made = error_from(422, content)
    assert type(made) is SkyfedError and made.status == 422
    assert made.code and made.code.isprintable() and made.message.isprintable()


async def test_the_client_does_not_unpack_an_encoding_it_did_not_ask_for() -> None:
    """A small gzip answer may unpack to gigabytes, past any bound on what was received."""
    packed = gzip.compress(b'{"a": "' + b"0" * 10_000_000 + b'"}')
    assert len(packed) < 20_000

    def answer(request: httpx.Request) -> httpx.Response:
        assert "accept-encoding" not in request.headers
        return httpx.Response(
            200,
            headers={"content-encoding": "gzip", "content-type": "application/json"},
            stream=httpx.ByteStream(packed),  # as a transport returns it, unread
        )

    async with SkyfedClient("http://zone.test", transport=httpx.MockTransport(answer)) as client:
        assert await client.request("GET", "/v1/zone", authenticate=False) is None
