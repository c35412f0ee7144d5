"""The generation engine: write-ahead records, cached uploads, pay-safe submits, one poll loop."""

from .core import Engine, EngineSettings, Event, Outcome, Reconciled
from .records import BindingRecord, PreparedRequest

__all__ = [
    "BindingRecord", "Engine", "EngineSettings", "Event", "Outcome", "PreparedRequest",
    "Reconciled",
]
