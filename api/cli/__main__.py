"""``python -m api.cli``: the ``taskexec`` command."""

import sys

from api.cli.main import main

sys.exit(main())
