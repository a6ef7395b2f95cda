import sys

from edge_committee.cli.main import main

sys.exit(main())
