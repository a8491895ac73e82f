#!/usr/bin/env bash
# Run one command against the Debian 13 engine (docker.io 26.1.5), then put the 20.10 lab
# dockerd back, even when the command fails. Call it holding /run/v6guard-tests.lock:
#
#   flock -o /run/v6guard-tests.lock scripts/with-engine-26.sh CMD [ARGS...]
#
# (-o: the lock stays with flock itself, so no dockerd started here inherits it.)
#
# The command's environment points at engine 26 (DOCKER_HOST, V6G_ENGINE,
# V6G_LAB_DAEMON_JSON) and says the test lock is held (V6G_TESTS_LOCK_HELD=1), so the tests
# do not wait for the lock their caller holds.
set -euo pipefail
cd "$(dirname "$0")/.."

restore() {
    echo "== restoring the Docker 20.10 lab dockerd"
    env -u DOCKER_HOST V6G_ENGINE=20.10 bash -c '. scripts/lib.sh && v6g_ensure_dockerd'
}
trap restore EXIT

status=0
(
    export V6G_ENGINE=26
    # shellcheck source=scripts/lib.sh
    . scripts/lib.sh
    v6g_ensure_dockerd
    v6g_ensure_image
    eval "$(v6g_engine_env)"
    export V6G_TESTS_LOCK_HELD=1
    "$@"
) || status=$?
exit "$status"
