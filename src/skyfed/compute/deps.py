"""What compute's routes receive: the compute feature's parts for this zone process."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from skyfed.compute.parts import ComputeParts
from skyfed.core import provided

PartsDep = Annotated[ComputeParts, Depends(provided(ComputeParts))]
