pytest_plugins = ["marketo_sandbox.testing"]
