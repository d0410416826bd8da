"""``UTCDateTime``: a wire-model datetime that always carries its UTC offset.

SQLite hands back naive datetimes even for ``DateTime(timezone=True)`` columns; every stored
timestamp is UTC (``ragd.db.models.utcnow``), so a naive one is marked UTC here and the JSON
says ``...Z`` as RFC 3339 ``date-time`` requires. Use it for timestamps in response models.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator


def as_utc(value: datetime) -> datetime:
    """``value`` with UTC attached when naive, converted to UTC otherwise."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


UTCDateTime = Annotated[datetime, AfterValidator(as_utc)]
