"""Helpers shared by the tests (no tests in here)."""
