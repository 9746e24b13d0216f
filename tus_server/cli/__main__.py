"""`python -m tus_server.cli ...`: the package's `main` (importing the package first installs
its quiet Ctrl-C handler)."""
import sys

from . import main

sys.exit(main())
