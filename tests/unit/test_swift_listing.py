"""Account listings as Swift gives them: pages, merges, formats; ACLs and metadata."""

from __future__ import annotations

import json

import pytest

from skyfed.errors import BadRequest, NotAcceptable, PreconditionFailed
from skyfed.objects.swift_access import clean_acl, parse_account_acl, referrer_allowed
from skyfed.objects.swift_listing import ListingQuery, choose_format, merge, render, select
from skyfed.objects.swift_meta import check_metadata, meta_updates

NAMES = ["b", "a/1", "a/2", "c", "Z", "é", "a-b", "ab"]


def names(page: list[dict[str, object]]) -> list[object]:
    return [e.get("name", e.get("subdir")) for e in page]


def test_pages_are_in_utf8_byte_order_with_markers_exclusive() -> None:
    assert names(select(NAMES, ListingQuery())) == ["Z", "a-b", "a/1", "a/2", "ab", "b", "c", "é"]
    assert names(select(NAMES, ListingQuery(marker="a/1", limit=3))) == ["a/2", "ab", "b"]
    assert names(select(NAMES, ListingQuery(end_marker="a/2"))) == ["Z", "a-b", "a/1"]
    assert names(select(NAMES, ListingQuery(reverse=True, limit=2))) == ["é", "c"]
    assert names(select(NAMES, ListingQuery(reverse=True, marker="b", end_marker="a/1"))) == [
        "ab",
        "a/2",
    ]


def test_a_delimiter_rolls_names_up_once() -> None:
    page = select(NAMES, ListingQuery(delimiter="/"))
    assert names(page) == ["Z", "a-b", "a/", "ab", "b", "c", "é"]
    assert page[2] == {"subdir": "a/"}
    assert names(select(NAMES, ListingQuery(prefix="a/", delimiter="/"))) == ["a/1", "a/2"]
    # Paging past a subdir given as the marker does not give it again.
    assert names(select(NAMES, ListingQuery(delimiter="/", marker="a/"))) == ["ab", "b", "c", "é"]


def test_merging_clusters_keeps_order_limit_and_one_subdir() -> None:
    query = ListingQuery(delimiter="/", limit=4)
    east = select(["a/1", "c", "e"], query)
    west = select(["a/2", "b", "d"], query)
    assert names(merge([east, west], query)) == ["a/", "b", "c", "d"]
    reverse = ListingQuery(reverse=True)
    merged = merge([select(["a", "c"], reverse), select(["b", "d"], reverse)], reverse)
    assert names(merged) == ["d", "c", "b", "a"]


def test_parameters_are_checked_as_swift_does() -> None:
    with pytest.raises(PreconditionFailed):
        ListingQuery.parse({"limit": "10001"})
    # As Swift: a limit that is not a whole number is no limit; delimiters may be long.
    assert ListingQuery.parse({"limit": "5000.0"}).limit == 10000
    assert names(select(["a--b", "a--c", "ab"], ListingQuery(delimiter="--"))) == ["a--", "ab"]
    query = ListingQuery.parse({"limit": "5", "reverse": "on", "prefix": "p"})
    assert (query.limit, query.reverse, query.prefix) == (5, True, "p")
    assert ("reverse", "true") in query.params() and ("format", "json") in query.params()


def test_formats_come_from_the_query_then_accept() -> None:
    assert choose_format(None, None) == "plain"
    assert choose_format("JSON", "application/xml") == "json"
    assert choose_format("yaml", None) == "plain"
    assert choose_format(None, "application/json") == "json"
    assert choose_format(None, "text/xml;q=0.9, application/json;q=0.1") == "xml"
    assert choose_format(None, "application/*") == "json"
    with pytest.raises(NotAcceptable):
        choose_format(None, "image/png")
    with pytest.raises(BadRequest):
        choose_format(None, "application/json;q=x")


def test_rendering() -> None:
    entries = [
        {"name": "c&d", "count": 1, "bytes": 2, "last_modified": "2026-12-05T00:00:00.000000"},
        {"subdir": "s/"},
    ]
    assert json.loads(render([dict(e) for e in entries], "json", "AUTH_x")) == entries
    assert render(entries, "plain", "AUTH_x") == b"c&d\ns/\n"
    xml = render(entries, "xml", "AUTH_x").decode()
    assert xml.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<account name="AUTH_x">')
    assert "<name>c&amp;d</name><count>1</count><bytes>2</bytes>" in xml
    assert '<subdir name="s/" />' in xml or '<subdir name="s/"/>' in xml
    assert render([], "plain", "AUTH_x") == b""


def test_acls() -> None:
    assert referrer_allowed("http://www.example.com/x", ["*"])
    assert referrer_allowed("http://www.example.com/x", [".example.com"])
    assert referrer_allowed("http://blah.example.com/x", ["*.example.com"])
    assert not referrer_allowed("http://www.example.com/x", ["*", "-www.example.com"])
    assert not referrer_allowed("", [".example.com"])
    assert clean_acl("x-container-read", " .r:*, .rlistings ,p:u") == ".r:*,.rlistings,p:u"
    with pytest.raises(BadRequest):
        clean_acl("x-container-write", ".r:*")
    assert parse_account_acl('{"read-only": ["p:u"], "admin": []}') == {"read-only": ["p:u"]}
    for bad in ("[1]", '{"owner": []}', '{"admin": "p:u"}', "{"):
        with pytest.raises(BadRequest):
            parse_account_acl(bad)


def test_metadata_limits_and_updates() -> None:
    check_metadata({"x-account-meta-a": "1" * 256}, "account-meta")
    for bad in (
        {"x-account-meta-": "1"},
        {"x-account-meta-" + "n" * 129: "1"},
        {"x-account-meta-a": "1" * 257},
        {f"x-account-meta-{i}": "1" for i in range(91)},
        {f"x-account-meta-{i:03}": "v" * 250 for i in range(17)},
    ):
        with pytest.raises(BadRequest):
            check_metadata(bad, "account-meta")
    updated = meta_updates(
        {"a": "1", "b": "2", "c": "3"},
        {"x-account-meta-a": "9", "x-account-meta-b": "", "x-remove-account-meta-c": "x"},
        "account-meta",
    )
    assert updated == {"a": "9"}
