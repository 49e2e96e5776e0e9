"""skyfed: one control plane over a tree of cloud zones."""

__version__ = "0.1.0"
