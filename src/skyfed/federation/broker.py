"""Broker accounts for zones on RabbitMQ: what each role may touch, and making them.

A broker checks rights by name: per virtual host, per user, three regexes over
the names of queues and exchanges (configure: declare and delete; write:
publish, and bind a queue; read: consume, and bind from an exchange). The
names are in `transport/names.py`; the table, with the commands an operator
runs, is in docs/zone-links.md.

- the zone's own processes: its exchanges, its queues, its wake-ups, and the
  default exchange to answer into reply queues;
- a parent's link account: publish to `skyfed.calls`, and its own reply queues;
- a host agent: publish to `skyfed.agents`, and its own reply queues.

So an agent can neither consume `skyfed.zone.<name>` nor publish a call there,
and no caller can publish through the default exchange (which reaches every
queue) or read another's answers.

`skyfed up` makes them with `rabbitmqctl` on the local node: one vhost per zone
(one broker per site, modelled), a zone user, a user per parent link and one
per agent, all in one `import_definitions`, and removes them afterwards when its
state directory was temporary.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit, urlunsplit

from skyfed.transport.names import (
    AGENTS_EXCHANGE,
    CALLS_EXCHANGE,
    RANDOM_TAIL,
    REPLY_PREFIX,
    agent_queue_for,
    commands_exchange_for,
    queue_for,
    wakeups_exchange_for,
)

_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
_CTL_TIMEOUT = 60.0  # seconds for one rabbitmqctl call
_CTL_AT_ONCE = 4  # rabbitmqctl calls at once (each starts an Erlang VM)


@dataclass(frozen=True, slots=True)
class Permissions:
    configure: str
    write: str
    read: str


def _literal(name: str) -> str:
    return re.escape(name).replace(r"\-", "-")  # "-" is literal outside a class


def _any_of(names: list[str]) -> str:
    return "^(" + "|".join(names) + ")$"


def zone_permissions(zone: str) -> Permissions:
    """The zone's own processes: declare and consume its queues, bind them to the
    callers' exchanges, send wake-ups (of tasks and of agents' commands), and answer
    through the default exchange."""
    queues = [_literal(queue_for(zone)), _literal(agent_queue_for(zone))]
    own = list(queues)
    for fanout in (wakeups_exchange_for(zone), commands_exchange_for(zone)):
        own += [_literal(fanout), rf"{_literal(fanout)}\.{RANDOM_TAIL}"]
    exchanges = [_literal(CALLS_EXCHANGE), _literal(AGENTS_EXCHANGE)]
    return Permissions(
        configure=_any_of([*exchanges, *own]),
        write=_any_of([_literal("amq.default"), *own]),
        read=_any_of([*exchanges, *own]),
    )


def _caller_permissions(account: str, exchange: str) -> Permissions:
    replies = rf"^{_literal(REPLY_PREFIX + account)}\.{RANDOM_TAIL}$"
    return Permissions(configure=replies, write=f"^{_literal(exchange)}$", read=replies)


def link_permissions(account: str) -> Permissions:
    """A parent's link account (`account`, its user at the zone): calls in, answers back."""
    return _caller_permissions(account, CALLS_EXCHANGE)


def agent_permissions(account: str) -> Permissions:
    """A host agent (`account`, its user at the zone): heartbeats in, answers back."""
    return _caller_permissions(account, AGENTS_EXCHANGE)


@dataclass(frozen=True, slots=True)
class BrokerUser:
    name: str
    password: str = field(repr=False)
    vhost: str
    permissions: Permissions


class BrokerError(RuntimeError):
    """rabbitmqctl is missing, or refused what it was asked."""


def rabbitmqctl_path() -> str:
    path = shutil.which("rabbitmqctl")
    if path is None:
        raise BrokerError(
            "rabbitmqctl is not installed here: skyfed up gives every zone on AMQP its own "
            "broker vhost and users with it (install RabbitMQ's CLI tools on this machine, "
            "run as a user allowed to use them, or link the zones over http)"
        )
    return path


def check_local(broker_url: str) -> None:
    """rabbitmqctl manages the broker of this machine: a bus_url elsewhere is refused."""
    host = urlsplit(broker_url).hostname or ""
    if host not in _LOOPBACK:
        raise BrokerError(
            f"bus_url names host {host!r}: skyfed up makes broker accounts with rabbitmqctl "
            "on this machine, so its zones' bus_url must be on loopback"
        )


def url_for(base_url: str, user: BrokerUser) -> str:
    """`base_url`'s broker (scheme, host, port) as `user`, in the user's vhost."""
    parts = urlsplit(base_url)
    host = parts.hostname or "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    netloc = f"{quote(user.name, safe='')}:{quote(user.password, safe='')}@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, "/" + quote(user.vhost, safe=""), "", ""))


def new_user(name: str, vhost: str, permissions: Permissions) -> BrokerUser:
    return BrokerUser(name, secrets.token_urlsafe(24), vhost, permissions)


def password_hash(password: str) -> str:
    """RabbitMQ's stored form (rabbit_password_hashing_sha256): base64(salt + sha256(salt +
    password)), so that the definitions handed to rabbitmqctl hold no password."""
    salt = os.urandom(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def definitions(vhosts: list[str], users: list[BrokerUser]) -> dict[str, object]:
    return {
        "vhosts": [{"name": v} for v in vhosts],
        "users": [
            {
                "name": u.name,
                "password_hash": password_hash(u.password),
                "hashing_algorithm": "rabbit_password_hashing_sha256",
                "tags": [],
            }
            for u in users
        ],
        "permissions": [
            {
                "user": u.name,
                "vhost": u.vhost,
                "configure": u.permissions.configure,
                "write": u.permissions.write,
                "read": u.permissions.read,
            }
            for u in users
        ],
    }


def apply(vhosts: list[str], users: list[BrokerUser]) -> None:
    """Make the vhosts and users (or bring them to these passwords and permissions), in
    one call: each rabbitmqctl call costs half a second."""
    data = json.dumps(definitions(vhosts, users))
    ctl("import_definitions", "--format", "json", stdin=data)  # from standard input


def remove(vhosts: list[str], users: list[str]) -> list[str]:
    """Delete vhosts (with their queues and permissions) and users, a few calls at once;
    what could not be deleted (already gone counts as deleted)."""
    jobs = [("delete_vhost", v) for v in vhosts] + [("delete_user", u) for u in users]
    with ThreadPoolExecutor(_CTL_AT_ONCE) as pool:
        outcomes = list(pool.map(lambda job: _delete(*job), jobs))
    return [name for (_, name), ok in zip(jobs, outcomes, strict=True) if not ok]


def _delete(command: str, name: str) -> bool:
    try:
        ctl(command, "--", name)
    except BrokerError as exc:
        return "not found" in str(exc) or "does not exist" in str(exc)
    return True


def ctl(*args: str, stdin: str | None = None) -> str:
    """Run rabbitmqctl on the local node; its output."""
    try:
        done = subprocess.run(
            [rabbitmqctl_path(), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=_CTL_TIMEOUT,
        )
    except subprocess.TimeoutExpired as exc:
        raise BrokerError(f"rabbitmqctl {args[0]} did not finish in {_CTL_TIMEOUT:g}s") from exc
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        raise BrokerError(f"rabbitmqctl {args[0]} failed: {' '.join(said)[:500]}")
    return done.stdout


@dataclass
class ZoneBroker:
    """One zone's site on the broker: its vhost, and a user for each that calls there."""

    base_url: str  # the broker (scheme, host, port) as the topology gave it
    vhost: str
    zone: BrokerUser
    links: dict[str, BrokerUser] = field(default_factory=dict)  # by parent
    agent: BrokerUser | None = None

    @property
    def users(self) -> list[BrokerUser]:
        return [self.zone, *self.links.values(), *([self.agent] if self.agent else [])]


class BrokerPlan:
    """Every zone's vhost and users on the local broker, named for one state directory
    (`tag`), so a rerun on it reuses them and two federations never share one."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.zones: dict[str, ZoneBroker] = {}

    def add_zone(
        self,
        zone: str,
        base_url: str,
        *,
        link_accounts: dict[str, str],  # parent -> its link account at this zone
        agent_account: str | None,
    ) -> ZoneBroker:
        rabbitmqctl_path()
        check_local(base_url)
        name = f"skyfed-{self.tag}-{zone}"  # vhost and zone user alike
        site = ZoneBroker(base_url, name, new_user(name, name, zone_permissions(zone)))
        for parent, account in link_accounts.items():
            site.links[parent] = new_user(f"{name}-{account}", name, link_permissions(account))
        if agent_account is not None:
            site.agent = new_user(f"{name}-{agent_account}", name, agent_permissions(agent_account))
        self.zones[zone] = site
        return site

    def zone_url(self, zone: str) -> str:
        site = self.zones[zone]
        return url_for(site.base_url, site.zone)

    def link_url(self, zone: str, parent: str) -> str:
        site = self.zones[zone]
        return url_for(site.base_url, site.links[parent])

    def agent_url(self, zone: str) -> str | None:
        site = self.zones.get(zone)
        if site is None or site.agent is None:
            return None
        return url_for(site.base_url, site.agent)

    @property
    def vhosts(self) -> list[str]:
        return [site.vhost for site in self.zones.values()]

    @property
    def user_names(self) -> list[str]:
        return [user.name for site in self.zones.values() for user in site.users]

    def apply(self) -> None:
        if self.zones:
            apply(self.vhosts, [u for site in self.zones.values() for u in site.users])

    def remove(self) -> list[str]:
        return remove(self.vhosts, self.user_names) if self.zones else []
