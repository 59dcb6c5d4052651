"""``python -m mobileface`` runs the same CLI as the ``mobileface`` command."""

import sys

from mobileface.cli import main

sys.exit(main())
