"""Project scripts: the local PostgreSQL of the tests and the demo."""
