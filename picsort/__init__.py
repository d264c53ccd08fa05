"""picsort: build, share and demo your own image classifier (fast.ai lesson 2)."""

__version__ = "0.1.0"
