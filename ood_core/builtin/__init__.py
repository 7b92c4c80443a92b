"""The built-in plugin: cross-entropy and the post-hoc scorers that need no training method."""
