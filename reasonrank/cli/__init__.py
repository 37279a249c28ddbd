"""The ``reasonrank`` command line."""
