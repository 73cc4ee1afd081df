#!/usr/bin/env bash
# A JupyterHub 4.1.x environment as an older hubctl left it (JupyterHub 4.1.6 from PyPI, Debian's
# Python), for the upgrade test from older pins (test/e2e/upgrade-old.test.ts): built once per
# machine, outside the checkout (about 30 s from PyPI), again when the pins below change.
# Usage: build-old-hub.sh [DIR] (default /var/lib/hubctl-test/jupyterhub-4.1).
set -euo pipefail

dir=${1:-${HUBCTL_TEST_OLD_HUB:-/var/lib/hubctl-test/jupyterhub-4.1}}
pins="jupyterhub==4.1.6"
marker=.hubctl-old-hub

ready() { [ -x "$dir/bin/jupyterhub" ] && [ -f "$dir/$marker" ] && [ "$(cat "$dir/$marker")" = "$pins" ]; }
ready && exit 0

mkdir -p "$(dirname "$dir")"
exec 9>"$dir.lock"
flock 9
ready && exit 0
rm -rf "$dir"
/usr/bin/python3 -m venv "$dir"
# shellcheck disable=SC2086
"$dir/bin/pip" install -q --disable-pip-version-check --only-binary :all: $pins
# A user's server reaches the environment's jupyterhub-singleuser as that user.
chmod 0755 "$(dirname "$dir")" "$dir"
echo "$pins" >"$dir/$marker"
