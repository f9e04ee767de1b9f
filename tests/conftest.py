# The `sandbox` and `make_sandbox` fixtures.
pytest_plugins = ["tests.support.fixtures"]
