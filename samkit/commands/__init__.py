"""Sub-commands of the ``samkit`` CLI; each module has ``add_parser(subparsers)``."""
