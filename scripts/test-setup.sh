#!/usr/bin/env bash
# What `make test` needs besides .venv, brought up if missing (CI runs the same step):
#   - the local PostgreSQL on 127.0.0.1:5432, started if it is down (skipped when
#     EDGEOPT_TEST_BACKENDS leaves PostgreSQL out or EDGEOPT_TEST_POSTGRES_URL points elsewhere);
#   - Debian's chromium and chromium-driver for the dashboard tests, installed with apt-get
#     only when `chromium` or `chromedriver` is not on PATH.
set -euo pipefail

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "test-setup: need root (or sudo) for: $*" >&2
    return 1
  fi
}

if [[ "${EDGEOPT_TEST_BACKENDS:-sqlite,postgresql}" == *postgresql* ]] &&
  [ -z "${EDGEOPT_TEST_POSTGRES_URL:-}" ]; then
  if ! command -v pg_isready >/dev/null || ! pg_isready -h 127.0.0.1 -p 5432 -q; then
    if ! command -v pg_ctlcluster >/dev/null || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
      echo "test-setup: PostgreSQL is not running on 127.0.0.1:5432 and no local cluster" \
        "was found; install it, or set EDGEOPT_TEST_BACKENDS=sqlite" >&2
      exit 1
    fi
    echo "test-setup: starting the local PostgreSQL"
    as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | tail -n 1)" main start
    for _ in $(seq 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
    pg_isready -h 127.0.0.1 -p 5432 -q || {
      echo "test-setup: PostgreSQL did not come up on 127.0.0.1:5432" >&2
      exit 1
    }
  fi
fi

if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  echo "test-setup: installing Debian's chromium and chromium-driver (dashboard tests)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi
