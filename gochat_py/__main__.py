import sys

from gochat_py.cli import main

sys.exit(main())
