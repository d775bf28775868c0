"""tribute: measure how much copyrighted works influence a model, then unlearn them or pay for them.

The package root stays tiny on purpose: importing ``tribute`` imports nothing heavy.
"""

__version__ = "0.1.0"
