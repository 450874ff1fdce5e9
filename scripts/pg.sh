#!/usr/bin/env bash
# A throwaway PostgreSQL 15 server for the tests, the benchmark and the
# demo (docs/decisions.md §21), run as an unprivileged user.
#   scripts/pg.sh start DIR   initdb in DIR/data, listen on 127.0.0.1 at a
#                             free port and on a unix socket in DIR; writes
#                             DIR/uri (postgresql://est@127.0.0.1:PORT)
#   scripts/pg.sh stop DIR    stop it (fast shutdown) and remove DIR
# As root the server runs as the "postgres" system user of Debian's
# postgresql-common; PostgreSQL refuses to run as root.
set -euo pipefail
bin=/usr/lib/postgresql/15/bin
cmd=${1:-}
dir=${2:-}
if [ -z "$cmd" ] || [ -z "$dir" ]; then
  echo "usage: $0 start|stop DIR" >&2
  exit 2
fi
# Only a folder this script made (or an empty one) is ever removed.
ours() {
  [ ! -e "$1" ] || [ -z "$(ls -A "$1")" ] || [ -f "$1/.est-pg" ]
}
as_user() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "$cmd" in
start)
  [ -x "$bin/initdb" ] || { echo "$0: $bin/initdb missing (apt-get install postgresql-15)" >&2; exit 1; }
  ours "$dir" || { echo "$0: $dir is not empty and was not made by $0" >&2; exit 1; }
  if [ -f "$dir/data/postmaster.pid" ]; then
    "$0" stop "$dir" || true
  fi
  rm -rf "$dir"
  mkdir -p "$dir"
  touch "$dir/.est-pg"
  dir=$(cd "$dir" && pwd)
  [ "$(id -u)" = 0 ] && chown postgres: "$dir"
  # A unix socket path is at most 107 bytes: keep it short.
  sock=$(mktemp -d /tmp/estpg.XXXXXX)
  [ "$(id -u)" = 0 ] && chown postgres: "$sock"
  echo "$sock" > "$dir/sockdir"
  as_user "$bin/initdb" -D "$dir/data" -U est -A trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 || {
    cat "$dir/initdb.log" >&2; exit 1; }
  for try in 1 2 3 4 5; do
    port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    # max_connections: every test, node and worker holds its own.
    if as_user "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
         -o "-k $sock -p $port -c listen_addresses=127.0.0.1 -c max_connections=200" \
         start >/dev/null; then
      echo "postgresql://est@127.0.0.1:$port" > "$dir/uri"
      echo "$port" > "$dir/port"
      cat "$dir/uri"
      exit 0
    fi
    echo "$0: start on port $port failed (try $try)" >&2
    tail -5 "$dir/server.log" >&2 || true
  done
  exit 1
  ;;
stop)
  [ -d "$dir" ] || exit 0
  ours "$dir" || { echo "$0: $dir was not made by $0; not touching it" >&2; exit 1; }
  if [ -f "$dir/data/postmaster.pid" ]; then
    as_user "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null || {
      pid=$(head -1 "$dir/data/postmaster.pid"); kill -9 "$pid" 2>/dev/null || true; }
  fi
  [ -f "$dir/sockdir" ] && rm -rf "$(cat "$dir/sockdir")"
  rm -rf "$dir"
  ;;
*)
  echo "usage: $0 start|stop DIR" >&2
  exit 2
  ;;
esac
