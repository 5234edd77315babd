"""octconv.symbol: the Symbol API (pair operators; networks by name)."""
from .octconv import *  # noqa: F401,F403
from .zoo import get_symbol, list_symbols  # noqa: F401
