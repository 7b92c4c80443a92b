"""``python -m oodx``: the same as the ``oodx`` command."""

from oodx.main import main

main()
