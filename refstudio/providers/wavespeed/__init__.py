"""wavespeed provider package."""

from .client import WaveSpeedProvider

__all__ = ["WaveSpeedProvider"]
