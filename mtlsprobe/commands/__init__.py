"""Subcommands that live in their own modules; cli.LAZY_COMMANDS imports them on first use.

Each module holds only the click command (options -> request -> pipeline -> render);
shared option decorators, rendering and exit handling come from mtlsprobe.cli.
"""
