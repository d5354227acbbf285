"""taskboard: a small tasks API with a web page."""

from taskboard._version import __version__
from taskboard.app import create_app

__all__ = ["__version__", "create_app"]
