"""`python -m tus_server ...` is `tus-minio ...` (see tus_server/cli)."""
import sys

from .cli import main

sys.exit(main())
