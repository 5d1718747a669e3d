"""`python -m scripts.bench`: the harness's command line (see run.py)."""

import sys

from scripts.bench.run import main

sys.exit(main())
