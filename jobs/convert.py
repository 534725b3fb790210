"""``ray job submit --working-dir . -- python jobs/convert.py SRC OUT [options]``

Same arguments as ``ray-ingest convert``; runs on the cluster the job was submitted to.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ray_ingest.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["convert", *sys.argv[1:]]))
