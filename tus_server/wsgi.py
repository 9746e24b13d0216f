"""gunicorn entry point: `gunicorn tus_server.wsgi:app`."""
from .app import create_app

app = create_app()
