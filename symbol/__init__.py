"""octconv.symbol: the Symbol API (pair operators; networks by name)."""
from .octconv import *  # noqa: F401,F403
from .octconv import __all__
