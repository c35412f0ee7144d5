"""Placeholder: commands land here."""

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
