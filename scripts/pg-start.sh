#!/usr/bin/env bash
# Start a throwaway PostgreSQL server on a free loopback port for the tests and print its URL.
# Installs Debian's postgresql package first if its binaries are missing. Usage:
#   eval "$(scripts/pg-start.sh)"   # sets SIM_TEST_PG_URL and SIM_TEST_PG_DIR
#   scripts/pg-stop.sh              # stops it and removes the data folder
set -euo pipefail
find_bin() {
  for d in /usr/lib/postgresql/*/bin; do [ -x "$d/pg_ctl" ] && { echo "$d"; return 0; }; done
  command -v pg_ctl >/dev/null 2>&1 && { dirname "$(command -v pg_ctl)"; return 0; }
  return 1
}
BIN=$(find_bin) || {
  echo "pg-start: PostgreSQL binaries missing; installing Debian's postgresql package" >&2
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >&2
  BIN=$(find_bin)
}
DIR=$(mktemp -d /tmp/sim-pg.XXXXXX)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
RUN=()
if [ "$(id -u)" = 0 ]; then  # initdb refuses to run as root
  chown postgres:postgres "$DIR" 2>/dev/null || { useradd -r postgres >&2 && chown postgres:postgres "$DIR"; }
  RUN=(runuser -u postgres --)
fi
"${RUN[@]}" "$BIN/initdb" -D "$DIR/data" -U sim --auth=trust -E UTF8 >/dev/null
"${RUN[@]}" "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/log" -w -t 30 \
  -o "-c listen_addresses=127.0.0.1 -p $PORT -k $DIR -c fsync=off" start >/dev/null
"${RUN[@]}" "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U sim sim_test
echo "export SIM_TEST_PG_URL=postgresql+psycopg://sim@127.0.0.1:$PORT/sim_test"
echo "export SIM_TEST_PG_DIR=$DIR"
echo "export SIM_TEST_PG_BIN=$BIN"
