"""nodeprobe: keeps nodes healthy when their container runtime goes bad."""

__version__ = "0.1.0"
"""The release; pyproject.toml reads it from here (one place to change)."""
