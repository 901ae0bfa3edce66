"""mtlsprobe: will client-certificate authentication reach the real server from here?"""

__version__ = "0.1.0"

#: The oldest cryptography the code works with (tested in CI beside the newest): 41.0.
MIN_CRYPTOGRAPHY = (41, 0)
