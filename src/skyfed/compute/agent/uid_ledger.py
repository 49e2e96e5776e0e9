"""Which user each process server runs as: one uid per server, from a range, kept on disk.

The ledger is `_uids.json` in the agent's state directory (0600):
`{"uids": {server id: uid}, "next": uid}`; the gid is the same number. A uid
stays taken until its server is deleted and its files are gone, so an agent
restart (which adopts running servers) keeps every server's uid. Uids are
handed out in turn from `next`, wrapping at the end of the range, so a freed
uid comes back as late as possible: what a server left where the agent does
not clean (a shared /tmp) meets a new owner only after the range turned over.

The range must hold no account of the host (its files would be the server's)
and never uid 0; raw uids without a passwd entry are what it is for.
"""

from __future__ import annotations

import grp
import json
import pwd
from pathlib import Path

from skyfed.compute.agent.driver import DriverError
from skyfed.identity.secret_files import write_private

UID_BASE = 200_000
UID_COUNT = 10_000
FIRST_ALLOWED = 1000  # below: system accounts (login.defs SYS_UID range)
UID_END = 2**31 - 1  # some tools read uids as signed 32-bit numbers
NOBODY = (65534, 65535)  # nobody, and the 16-bit (uid_t)-1


def check_range(base: int, count: int) -> None:
    """Refuse a range that could hand out root, a system or nobody's uid, or a host account."""
    if count < 1:
        raise DriverError("--server-uid-count must be at least 1")
    end = base + count  # exclusive
    if base < FIRST_ALLOWED or end > UID_END:
        raise DriverError(
            f"the server uid range {base}..{end - 1} must lie within "
            f"{FIRST_ALLOWED}..{UID_END - 1} (never root or a system account)"
        )
    if any(base <= n < end for n in NOBODY):
        raise DriverError(f"the server uid range {base}..{end - 1} holds nobody's uid 65534")
    for user in pwd.getpwall():
        if base <= user.pw_uid < end:
            raise DriverError(
                f"the server uid range {base}..{end - 1} holds account {user.pw_name!r} "
                f"(uid {user.pw_uid}), whose files its server would own: choose a range no "
                "account uses (--server-uid-base)"
            )
    for group in grp.getgrall():
        if base <= group.gr_gid < end:
            raise DriverError(
                f"the server uid range {base}..{end - 1} holds group {group.gr_name!r} "
                f"(gid {group.gr_gid}), whose files its servers would share: choose a range "
                "no group uses (--server-uid-base)"
            )


class UidLedger:
    def __init__(self, path: Path, base: int = UID_BASE, count: int = UID_COUNT) -> None:
        self.path = path
        self.base = base
        self.count = count
        self._uids: dict[str, int] = {}
        self._next = base

    def load(self) -> None:
        """Read the ledger (none yet: empty). A damaged one stops the agent: guessing
        would hand a running server's uid to another."""
        try:
            body = json.loads(self.path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            raise DriverError(f"cannot read the uid ledger {self.path}: {exc}") from exc
        uids = body.get("uids") if isinstance(body, dict) else None
        if not isinstance(uids, dict) or not all(
            isinstance(k, str) and type(v) is int and v > 0 for k, v in uids.items()
        ):
            raise DriverError(f"the uid ledger {self.path} is damaged: {body!r:.200}")
        # Uids outside a range the operator has since changed stay taken until freed.
        self._uids = dict(uids)
        nxt = body.get("next")
        self._next = nxt if type(nxt) is int and self._in_range(nxt) else self.base

    def _in_range(self, uid: int) -> bool:
        return self.base <= uid < self.base + self.count

    def _save(self) -> None:
        write_private(self.path, json.dumps({"uids": self._uids, "next": self._next}))

    def get(self, server_id: str) -> int | None:
        return self._uids.get(server_id)

    def taken(self) -> dict[str, int]:
        return dict(self._uids)

    def allocate(self, server_id: str) -> int:
        """The server's uid: the one it has, or the next free one in the range (saved)."""
        held = self._uids.get(server_id)
        if held is not None:
            return held
        taken = set(self._uids.values())
        start = self._next - self.base
        for step in range(self.count):
            uid = self.base + (start + step) % self.count
            if uid not in taken:
                break
        else:
            raise DriverError(
                f"no free server uid: all {self.count} from {self.base} are taken "
                "(--server-uid-count)"
            )
        assert uid != 0
        self._uids[server_id] = uid
        self._next = self.base + (uid - self.base + 1) % self.count
        try:
            self._save()
        except OSError as exc:
            del self._uids[server_id]
            raise DriverError(f"cannot record server {server_id}'s uid: {exc}") from exc
        return uid

    def release(self, server_id: str) -> None:
        if self._uids.pop(server_id, None) is not None:
            self._save()
