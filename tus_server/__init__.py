"""tus-minio: a tus 1.0.0 server that keeps uploads chunk by chunk in MinIO."""
from .app import create_app
from .config import Settings

__all__ = ["create_app", "Settings"]
__version__ = "0.1.0"
