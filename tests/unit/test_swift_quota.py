"""Account quotas' headers and limits (objects/swift_quota.py, pure parts)."""

from __future__ import annotations

import pytest

from skyfed.errors import BadRequest, Forbidden
from skyfed.identity.principal import Principal
from skyfed.objects import swift_quota
from skyfed.objects.models import SwiftAccount

ADMIN = Principal("u1", "admin", "p0", frozenset({"admin"}))
MEMBER = Principal("u2", "mia", "p1", frozenset({"member"}))


def test_headers_become_changes() -> None:
    changes = swift_quota.updates(
        {
            "x-account-quota-bytes": " 100 ",
            "x-account-quota-count-policy-gold": "5",
            "x-remove-account-quota-bytes-policy-silver": "t",
            "x-account-quota-bytes-policy-tin": "9",  # no such tier: ignored
            "x-account-meta-colour": "red",
        },
        ["gold", "silver"],
    )
    assert changes == {"bytes": 100, "count:gold": 5, "bytes:silver": None}


def test_the_old_header_a_removal_and_an_empty_value() -> None:
    assert swift_quota.updates({"x-account-meta-quota-bytes": "7"}, []) == {"bytes": 7}
    # The new header wins over the old one; a removal over a value.
    both = {"x-account-meta-quota-bytes": "7", "x-account-quota-bytes": "8"}
    assert swift_quota.updates(both, []) == {"bytes": 8}
    removed = {"x-account-quota-count": "3", "x-remove-account-quota-count": "t"}
    assert swift_quota.updates(removed, []) == {"count": None}
    assert swift_quota.updates({"x-account-quota-count": ""}, []) == {"count": None}
    for bad in ("-1", "\u00b2", "1" * 20):  # "²" passes str.isdigit, not int()
        with pytest.raises(BadRequest):
            swift_quota.updates({"x-account-quota-count": bad}, [])
    # A tier no longer offered: its quota can still be removed, not set; no empty tier.
    gone = {"x-remove-account-quota-bytes-policy-old": "t", "x-account-quota-count-policy-": "1"}
    assert swift_quota.updates(gone, ["gold"]) == {"bytes:old": None}
    assert swift_quota.asked(["x-account-quota-count-policy-gold"])
    assert swift_quota.asked(["x-remove-account-meta-quota-bytes"])
    assert not swift_quota.asked(["x-account-meta-colour"])


def test_only_an_admin_applies_them_and_the_old_metadata_goes() -> None:
    row = SwiftAccount(project_id="p1", metadata_={"quota-bytes": "5", "colour": "red"}, quotas={})
    assert swift_quota.of(row) == {"bytes": 5}  # kept the old way, still honoured
    with pytest.raises(Forbidden):
        swift_quota.apply(row, {"bytes": 1}, MEMBER)
    swift_quota.apply(row, {"bytes": 10, "count:gold": 2}, ADMIN)
    assert row.quotas == {"bytes": 10, "count:gold": 2}
    assert row.metadata_ == {"colour": "red"}
    assert swift_quota.headers(swift_quota.of(row)) == {
        "X-Account-Quota-Bytes": "10",
        "X-Account-Quota-Count-Policy-gold": "2",
    }
    swift_quota.apply(row, {"bytes": None}, ADMIN)
    assert swift_quota.of(row) == {"count:gold": 2}


def test_a_quota_set_the_old_way_stays_when_another_is_changed() -> None:
    row = SwiftAccount(project_id="p1", metadata_={"quota-bytes": "500"}, quotas={})
    swift_quota.apply(row, {"count": 9}, ADMIN)
    assert swift_quota.of(row) == {"bytes": 500, "count": 9}
    assert row.metadata_ == {}


def test_which_quota_an_upload_passes() -> None:
    usage = (3, 90, {"gold": (1, 60), "silver": (2, 30)})
    assert swift_quota.exceeded({"bytes": 100}, usage, "gold", 10) is None
    assert swift_quota.exceeded({"bytes": 100}, usage, "gold", 11) == "Upload exceeds quota."
    assert swift_quota.exceeded({"count": 3}, usage, "gold", 0) == "Upload exceeds quota."
    policy = {"bytes:gold": 70}
    assert swift_quota.exceeded(policy, usage, "gold", 11) == "Upload exceeds policy quota."
    assert swift_quota.exceeded(policy, usage, "silver", 11) is None
    assert swift_quota.exceeded({"count:silver": 2}, usage, "silver", 1) is not None
