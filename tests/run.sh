#!/usr/bin/env bash
# The README's test command: on a fresh Debian/Ubuntu machine with Python 3.11,
# install everything the tests need (Debian's jackd2, a virtual environment
# with jamd[cpu,train,dev]) and run ruff and the whole test suite.
# Extra arguments go to pytest, e.g.  bash tests/run.sh -k generate
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3

need_apt=""
command -v jackd >/dev/null || need_apt="$need_apt jackd2"
"$PY" -c "import ensurepip" 2>/dev/null || need_apt="$need_apt python3-venv"
if [ -n "$need_apt" ]; then
  echo "installing Debian packages:$need_apt"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $need_apt >/dev/null
fi

# A non-editable install, as users get it: the tests then prove that the
# shipped models are found from site-packages, not only from the clone.
"$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# link: the Ableton Link tests (GPLv2+ code in the test environment only, see README); osc: the OSC tests
.venv/bin/python -m pip install -q ".[cpu,train,dev,link,osc]"
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
