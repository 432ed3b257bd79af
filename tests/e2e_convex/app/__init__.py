"""The functions the end-to-end tests serve: `python -m livedb serve tests/e2e_convex/app`."""
