"""tus-minio: a tus 1.0.0 server that keeps uploads chunk by chunk in MinIO.

`create_app` and `Settings` are loaded on first use (PEP 562), not here: every import of a
`tus_server.*` module runs this file first, and the transfer client (`tus_server.cli`) must not
pay for Flask and minio, nor spend its start-up in imports a Ctrl-C could break into.
"""
__all__ = ["create_app", "Settings"]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "create_app":
        from .app import create_app

        return create_app
    if name == "Settings":
        from .config import Settings

        return Settings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
