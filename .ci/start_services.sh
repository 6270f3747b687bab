#!/usr/bin/env bash
# Start a throwaway PostgreSQL server for the test suite, on 127.0.0.1 only.
#
# Sourced (`source .ci/start_services.sh`): starts the server, exports
# ONMODEL_TEST_POSTGRES_URL, ONMODEL_PG_PID and ONMODEL_PG_DIR, and defines
# `onmodel_stop_services`, which stops the server by its pid and deletes its
# folder.
# Executed: starts the server and prints the `export` lines, for
# `eval "$(.ci/start_services.sh)"`. Stop it later with
# `.ci/start_services.sh stop PID DIR`.
#
# Settings: ONMODEL_PG_BIN (server binaries, default the PostgreSQL 15 ones)
# and ONMODEL_PG_PORT (first port to try, default 55432).

_onmodel_log() {
  echo "start_services: $*" >&2
}

_onmodel_find_pg_bin() {
  local candidate="${ONMODEL_PG_BIN:-/usr/lib/postgresql/15/bin}"
  if [[ -x "$candidate/initdb" ]]; then
    echo "$candidate"
    return 0
  fi
  if [[ "$(id -u)" == "0" ]] && command -v apt-get >/dev/null; then
    _onmodel_log "no PostgreSQL binaries in $candidate; installing the postgresql package"
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
  fi
  # The package may bring a newer major version than 15; take the newest.
  local found
  found="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
  if [[ -n "$found" && -x "$found/initdb" ]]; then
    echo "$found"
    return 0
  fi
  _onmodel_log "PostgreSQL server binaries not found; install the postgresql package or set ONMODEL_PG_BIN"
  return 1
}

_onmodel_port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

_onmodel_free_port() {
  local port="${ONMODEL_PG_PORT:-55432}"
  local last=$((port + 100))
  while ((port < last)); do
    if ! _onmodel_port_in_use "$port"; then
      echo "$port"
      return 0
    fi
    port=$((port + 1))
  done
  _onmodel_log "no free port in ${ONMODEL_PG_PORT:-55432}..$last on 127.0.0.1; set ONMODEL_PG_PORT"
  return 1
}

# Run a command as the owner of the data folder. PostgreSQL refuses to run
# as root, so root runs it as the `postgres` system user.
_onmodel_as_owner() {
  if [[ "$(id -u)" == "0" ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

onmodel_start_postgres() {
  local bin port dir pid
  bin="$(_onmodel_find_pg_bin)" || return 1
  port="$(_onmodel_free_port)" || return 1
  dir="$(mktemp -d /tmp/onmodel-pg.XXXXXX)"
  if [[ "$(id -u)" == "0" ]]; then
    if ! id postgres >/dev/null 2>&1; then
      _onmodel_log "running as root but there is no 'postgres' user to run the server as"
      rm -rf "$dir"
      return 1
    fi
    chown postgres: "$dir"
  fi

  # Trust authentication is safe only because the server listens on
  # 127.0.0.1 and a socket inside its private folder, and lives for one test run.
  if ! _onmodel_as_owner "$bin/initdb" -D "$dir/data" -U onmodel --auth=trust \
    --encoding=UTF8 --no-locale >"$dir/initdb.log" 2>&1; then
    _onmodel_log "initdb failed; its output follows"
    cat "$dir/initdb.log" >&2
    rm -rf "$dir"
    return 1
  fi

  # fsync and full-page writes are off: the data is thrown away after the run.
  if ! _onmodel_as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
    start >/dev/null; then
    _onmodel_log "PostgreSQL did not start; server log follows"
    cat "$dir/server.log" >&2
    rm -rf "$dir"
    return 1
  fi
  pid="$(head -n 1 "$dir/data/postmaster.pid")"

  if ! _onmodel_as_owner "$bin/createdb" -h 127.0.0.1 -p "$port" -U onmodel onmodel; then
    _onmodel_log "createdb failed"
    onmodel_stop_postgres "$pid" "$dir"
    return 1
  fi

  export ONMODEL_PG_PID="$pid"
  export ONMODEL_PG_DIR="$dir"
  export ONMODEL_TEST_POSTGRES_URL="postgresql+psycopg://onmodel@127.0.0.1:$port/onmodel"
  _onmodel_log "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port, pid $pid, folder $dir"
}

# Stop the server by its pid (fast shutdown: active connections are closed)
# and delete its folder.
onmodel_stop_postgres() {
  local pid="$1" dir="$2"
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    kill -INT "$pid"
    local waited=0
    while kill -0 "$pid" 2>/dev/null && ((waited < 300)); do
      sleep 0.1
      waited=$((waited + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
      _onmodel_log "PostgreSQL pid $pid did not stop within 30 s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  if [[ -n "$dir" && "$dir" == /tmp/onmodel-pg.* ]]; then
    rm -rf "$dir"
  fi
  _onmodel_log "PostgreSQL pid $pid stopped"
}

onmodel_stop_services() {
  onmodel_stop_postgres "${ONMODEL_PG_PID:-}" "${ONMODEL_PG_DIR:-}"
  unset ONMODEL_PG_PID ONMODEL_PG_DIR ONMODEL_TEST_POSTGRES_URL
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -euo pipefail
  if [[ "${1:-}" == "stop" ]]; then
    onmodel_stop_postgres "${2:?usage: $0 stop PID DIR}" "${3:?usage: $0 stop PID DIR}"
    exit 0
  fi
  onmodel_start_postgres
  echo "export ONMODEL_TEST_POSTGRES_URL=$ONMODEL_TEST_POSTGRES_URL"
  echo "export ONMODEL_PG_PID=$ONMODEL_PG_PID"
  echo "export ONMODEL_PG_DIR=$ONMODEL_PG_DIR"
else
  onmodel_start_postgres
fi
