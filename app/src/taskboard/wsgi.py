"""WSGI entry point: ``gunicorn taskboard.wsgi:app``."""

from taskboard import create_app

app = create_app()
