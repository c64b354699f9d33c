"""``python -m prefect_torch ...`` runs the ``prefect-torch`` command line."""
import sys

from .cli import main

sys.exit(main())
