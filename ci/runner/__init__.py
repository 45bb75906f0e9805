"""The workspace build runner behind ``ci/build.py``.

It knows the uv workspace's package graph and runs lint, tests (with a content-hash cache and
affected-target selection) and per-member isolation checks. It does not install anything into the
main environment, and it uses the Python standard library only.
"""
