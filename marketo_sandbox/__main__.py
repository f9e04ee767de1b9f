"""``python -m marketo_sandbox``: same as the ``marketo-sandbox`` console script."""

import sys

from .cli import main

sys.exit(main())
