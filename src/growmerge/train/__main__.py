"""`python -m growmerge.train JOB.yaml ...` = `growmerge train JOB.yaml ...`; the torchrun entry point:

    torchrun --nproc-per-node 2 -m growmerge.train JOB.yaml [--fsdp]
"""

import sys

from growmerge.cli import main

if __name__ == "__main__":
    sys.argv[1:1] = ["train"]
    main()
