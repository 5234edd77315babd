"""octconv.gluon: the Gluon API (pair blocks; networks by name)."""
from .octconv import *  # noqa: F401,F403
from .zoo import get_model, list_models  # noqa: F401
