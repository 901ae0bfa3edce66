"""mtlsprobe: will client-certificate authentication reach the real server from here?"""

__version__ = "0.1.0"
