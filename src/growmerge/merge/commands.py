"""CLI commands of `growmerge.merge` (registered by `growmerge.cli`)."""

import typer


def register(app: typer.Typer) -> None:
    """Add this concept's commands to the main app (none yet)."""
