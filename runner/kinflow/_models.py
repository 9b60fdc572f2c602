"""Pydantic models kinflow provides to user code (imported only when asked for).

Kept apart so that importing `kinflow` (and starting the runner) does not
import pydantic; user code that defines models imports it anyway.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class EmptyModel(BaseModel):
    """Input of a workflow that declares no input_validator (extra fields are kept)."""

    model_config = ConfigDict(extra="allow")
