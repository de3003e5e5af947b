import sys

from vitl.cli import main

sys.exit(main())
