"""``python -m ray_ingest.cli <verb> ...``, as ``ray-ingest <verb> ...``."""

import sys

from ray_ingest.cli import main

sys.exit(main())
