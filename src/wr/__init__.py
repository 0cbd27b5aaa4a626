"""wr: a workflow runner that runs thousands to millions of shell commands reliably."""

__version__ = "0.1.0"

__all__ = ["__version__"]
