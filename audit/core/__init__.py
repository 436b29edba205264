"""Core: model adapters, dataset specification and the method interface."""
