#!/usr/bin/env bash
# Stop the server scripts/pg-start.sh started (from SIM_TEST_PG_DIR / SIM_TEST_PG_BIN) and remove its data.
set -u
[ -n "${SIM_TEST_PG_DIR:-}" ] && [ -d "$SIM_TEST_PG_DIR" ] || exit 0
RUN=()
[ "$(id -u)" = 0 ] && RUN=(runuser -u postgres --)
"${RUN[@]}" "$SIM_TEST_PG_BIN/pg_ctl" -D "$SIM_TEST_PG_DIR/data" -m fast -w stop >/dev/null 2>&1
rm -rf "$SIM_TEST_PG_DIR"
