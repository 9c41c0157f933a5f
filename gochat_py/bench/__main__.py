import sys

from gochat_py.bench.cli import main

sys.exit(main())
