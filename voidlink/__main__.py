import sys

from voidlink.cli import main

sys.exit(main())
