"""Framework adapters. Each submodule imports its framework; import the one you use."""
