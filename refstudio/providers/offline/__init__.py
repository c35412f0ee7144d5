"""offline provider package."""

from .provider import OfflineProvider

__all__ = ["OfflineProvider"]
