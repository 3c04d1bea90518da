#!/usr/bin/env bash
# Set up .venv on a fresh machine, or bring it up to date: torch first, pinned to the CPU build this
# project is tested with (an unpinned torch pulls GBs of CUDA packages), then kdtrack with the tested
# versions of everything else (constraints.txt), with the test tools (dev), the team server's driver
# and auth (server), and Ray (ray), so that the Ray tests run rather than skip.
set -euo pipefail
cd "$(dirname "$0")"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -c constraints.txt -e ".[dev,server,ray]"   # the tests run a team server and Ray clusters too
