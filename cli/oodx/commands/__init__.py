"""Subcommands of ``oodx``; each module is imported only when its command runs."""
