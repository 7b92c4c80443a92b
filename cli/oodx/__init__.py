"""oodx: the command line of the oodx OOD-detection ecosystem (``oodx --help``).

Importing this package is cheap: it imports neither torch nor any subcommand.
"""

from __future__ import annotations

__version__ = "0.1.0"
