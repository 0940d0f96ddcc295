"""The operator's entry point: the `cyberclaims` command line."""
