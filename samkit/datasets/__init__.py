"""Readers of the standard dataset layouts, shared by the heads and the CLI.

``samkit.datasets.vos``: the VOS benchmark folders (DAVIS 2017, SA-V, LVOS / YouTube-VOS / MOSE).
Import the submodules directly; this package imports nothing.
"""
