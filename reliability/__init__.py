"""`make reliability`: faults, SIGKILL crashes, hostile input and secret leaks, measured from a run.

`python -m reliability.run` drives the real command lines against local sandboxes and writes
RELIABILITY.md; every figure in that file comes from the run that wrote it.
"""
