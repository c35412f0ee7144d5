"""The standing hostile suite: bad input must get one clear error and change nothing.

A package (unlike the rest of ``tests/``) so that its ``conftest.py`` and its modules cannot
clash with ``tests/conftest.py``, which the other test modules import as ``conftest``.
"""
