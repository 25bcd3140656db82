"""Built-in flavors, one module per library, each exposing ``FLAVOR``.

They register through the ``gyre.flavors`` entry-point group, like a third-party flavor
would. No module here imports its library at import time.
"""
