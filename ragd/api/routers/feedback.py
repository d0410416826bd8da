"""``POST /v1/feedback``: thumbs up or down, with an optional comment, on an answer."""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, status
from pydantic import BaseModel, ConfigDict, Field

from ragd.api.deps import CurrentPrincipal
from ragd.api.routers.monitoring import MonitorDep
from ragd.api.timestamps import UTCDateTime

router = APIRouter(prefix="/v1", tags=["monitoring"])


class FeedbackCreate(BaseModel):
    """Feedback on one assistant message of the caller's conversation."""

    model_config = ConfigDict(extra="forbid")
    message_id: str = Field(min_length=1, max_length=32, pattern=r"^[0-9a-zA-Z_-]+$")
    rating: Literal["up", "down"]
    comment: str = Field(default="", max_length=2000)


class FeedbackPublic(BaseModel):
    """Stored feedback (giving it again replaces it)."""

    id: str
    message_id: str
    rating: Literal["up", "down"]
    comment: str
    created_at: UTCDateTime
    updated_at: UTCDateTime


@router.post("/feedback", response_model=FeedbackPublic, status_code=status.HTTP_201_CREATED)
async def give_feedback(
    body: FeedbackCreate, principal: CurrentPrincipal, monitor: MonitorDep
) -> FeedbackPublic:
    """Record thumbs up/down on a message; 404 when the caller cannot see the message."""
    rating = 1 if body.rating == "up" else -1
    fb = await asyncio.to_thread(monitor.record_feedback, principal, body.message_id, rating, body.comment)
    return FeedbackPublic(
        id=fb.id,
        message_id=fb.message_id,
        rating="up" if fb.rating > 0 else "down",
        comment=fb.comment,
        created_at=fb.created_at,
        updated_at=fb.updated_at,
    )
