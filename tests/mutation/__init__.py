"""The mutation harness: break the product on purpose, in a copy, and check the right test fails.

`run.py` is the tool (`.venv/bin/python tests/mutation/run.py --help`), `cases.toml` the named
breakages, one per README promise, and `test_run.py` the harness's own fast tests.
"""
