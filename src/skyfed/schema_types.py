"""Field types shared by every feature's API schemas and settings.

Strings never carry NUL (PostgreSQL cannot store it, and no name needs it).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints

NAME_MAX = 63
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
# A path of zone names below a zone: "eu/eu-dc1" (16 levels at most).
PATH_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}(/[A-Za-z0-9][A-Za-z0-9._-]{0,62}){0,15}$"
# Hosts an agent may carry: a host name, or a name's start followed by one `*`
# (`*` alone: every host). See compute/hosts/grants.py.
HOST_PATTERN = r"^([A-Za-z0-9][A-Za-z0-9._-]{0,62}|([A-Za-z0-9][A-Za-z0-9._-]{0,61})?\*)$"
# Capability and label keys.
KEY_PATTERN = r"^[A-Za-z0-9_.:/-]{1,64}$"
_NO_NUL = r"^[^\x00]*$"

Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
HostPattern = Annotated[str, StringConstraints(pattern=HOST_PATTERN)]
Key = Annotated[str, StringConstraints(pattern=KEY_PATTERN)]
Text64 = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=_NO_NUL)]
Text255 = Annotated[str, StringConstraints(max_length=255, pattern=_NO_NUL)]
Secret = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=_NO_NUL)]


class Strict(BaseModel):
    """An input body: unknown fields and loose types ("12" for 12) are refused."""

    model_config = ConfigDict(extra="forbid", strict=True)
