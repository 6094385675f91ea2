"""`python -m bmpose <command>`: the same as the `bmpose` script."""
import sys

from bmpose.cli import main

sys.exit(main())
