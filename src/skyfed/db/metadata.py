"""All tables, gathered: import this to get a complete `metadata` (migrations, tests)."""

from skyfed.compute import models as _compute  # noqa: F401
from skyfed.compute.agent_accounts import models as _agent_accounts  # noqa: F401
from skyfed.compute.hosts import models as _hosts  # noqa: F401
from skyfed.db.base import Base
from skyfed.identity import models as _identity  # noqa: F401
from skyfed.objects import models as _objects  # noqa: F401
from skyfed.tasks import models as _tasks  # noqa: F401
from skyfed.zones import models as _zones  # noqa: F401

metadata = Base.metadata
