"""Code the tests share: fixture paths, torch-format writers, tiny training setups, the editor's
test models, and the worker scripts that tests run in subprocesses."""
