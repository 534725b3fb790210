"""``ray job submit --working-dir . -- python jobs/evaluate.py DATA --model PATH [options]``

Same arguments as ``ray-ingest evaluate``.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ray_ingest.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
