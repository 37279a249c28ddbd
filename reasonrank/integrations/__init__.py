"""Framework adapters. Each submodule imports its framework; import the one you use. ``adapter`` is what they share."""
