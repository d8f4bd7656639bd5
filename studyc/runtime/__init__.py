"""Execution: the run protocol and SDK, the store, executors, failure classes."""
