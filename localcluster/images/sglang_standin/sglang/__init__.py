"""A stand-in for SGLang 0.5.9's server, for clusters without GPUs: same command line, canned answers.

Only `python3 -m sglang.launch_server` exists; see launch_server.py.
"""

__version__ = "0.5.9"
