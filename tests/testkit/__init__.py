"""Helpers shared by test modules in several folders (tests/ is on sys.path: pyproject's
pytest `pythonpath`)."""
