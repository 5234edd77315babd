"""octconv.gluon: the Gluon API (pair blocks; networks by name)."""
from .octconv import *  # noqa: F401,F403
from .octconv import __all__
