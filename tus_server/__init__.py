"""tus-minio: a tus 1.0.0 server that keeps uploads chunk by chunk in MinIO.

`create_app` and `Settings` are loaded on first use (PEP 562), not here: every import of a
`tus_server.*` module runs this file first, and the transfer client (`tus_server.cli`) must not
pay for Flask and minio, nor spend its start-up in imports a Ctrl-C could break into.

When this process is the CLI (`python -m tus_server[.cli]`, or the `tus-minio` script), a Ctrl-C
from here on exits quietly with status 130: Python would otherwise print a KeyboardInterrupt
traceback if it came while the import system is still looking for `tus_server.cli`, before
that package's own first line can install the handler. The server is never touched by this.
"""
import os as _os
import sys as _sys

__all__ = ["create_app", "Settings"]
__version__ = "0.1.0"


def _cli_is_starting() -> bool:
    if _sys.argv[:1] == ["-m"]:  # runpy is importing the packages of `python -m <module>`
        return bool({"tus_server", "tus_server.cli"} & set(getattr(_sys, "orig_argv", ())))
    return bool(_sys.argv) and _os.path.basename(_sys.argv[0]) == "tus-minio"


if _cli_is_starting():
    import signal as _signal

    def _quiet_interrupt(signum, frame):
        raise SystemExit(130)

    _signal.signal(_signal.SIGINT, _quiet_interrupt)


def __getattr__(name: str):
    if name == "create_app":
        from .app import create_app

        return create_app
    if name == "Settings":
        from .config import Settings

        return Settings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
