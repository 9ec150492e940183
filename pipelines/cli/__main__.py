"""``python -m pipelines.cli ARGS``: the ``claimscore`` command without the installed script."""

import sys

from pipelines.cli import main

sys.exit(main())
