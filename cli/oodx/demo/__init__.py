"""``oodx demo``: the whole pipeline on real data bundled in pip packages.

``data`` loads and caches the images (numpy only), ``pipeline`` trains, saves, exports and
evaluates (torch, imported when the demo runs).
"""
