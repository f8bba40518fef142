"""The WSGI entry point: ``gunicorn wsgi:app`` or ``flask --app wsgi ...``."""

from app import create_app
from app.core.config import ConfigError

try:
    app = create_app()
except ConfigError as e:
    raise SystemExit(f"configuration error: {e}") from None
