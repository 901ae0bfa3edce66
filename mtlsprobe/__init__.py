"""mtlsprobe: will client-certificate authentication reach the real server from here?"""

__version__ = "0.1.0"

#: The oldest cryptography the code works with (tested in CI beside the newest): 41.0.
MIN_CRYPTOGRAPHY = (41, 0)

# Before any submodule loads: the mypyc-compiled modules run only as a matching set.
from mtlsprobe import compiled as _compiled  # noqa: E402

_compiled.install()
