"""The one source of taskboard's version (read by pyproject.toml and the app)."""

__version__ = "0.1.0"
