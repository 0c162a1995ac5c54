import sys

from nodeprobe.cli import main

sys.exit(main())
