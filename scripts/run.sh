#!/usr/bin/env bash
# `make run`: the database migrated to this release's schema (an older release's
# var/tradestream.db upgrades in place), demo data, the whole stack under
# supervisord, a sample trade log replayed into it. Ctrl-C stops everything. Safe to run again: the demo data is
# reused (passwords and tokens reset) and supervisord clears a stale socket itself.
#
# Settings pass through to every process as TRADESTREAM_* variables, e.g.
#   TRADESTREAM_DATABASE_URL=postgresql+psycopg://me@localhost/tradestream make run
# Its own: TRADESTREAM_SPEED (the replay's pace, 10) and TRADESTREAM_STARTUP_TIMEOUT (seconds every program
# may take to start, 60; past it, or when supervisord gives one up, the run fails naming it and its log).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=.venv/bin
CONFIG=supervisord.conf
SAMPLE=producers/samples/sample-trades.jsonl
HOST=${TRADESTREAM_HOST:-127.0.0.1}
[[ $HOST == 0.0.0.0 || $HOST == "::" ]] && HOST=127.0.0.1 # listening everywhere: ask loopback
URL="http://${HOST}:${TRADESTREAM_PORT:-8080}"
WEBHOOK_URL="http://${HOST}:${TRADESTREAM_WEBHOOK_PORT:-8081}"
# How long every program may take to start (supervisord's own retries of one that dies at once take about as long).
STARTUP_TIMEOUT_S=${TRADESTREAM_STARTUP_TIMEOUT:-60}
REPLAY_SPEED=${TRADESTREAM_SPEED:-10}
# The broker's journal: its epoch, heads and histories survive its restarts, so open
# dashboards resume with no resync (supervisord.conf has the same default).
export TRADESTREAM_JOURNAL=${TRADESTREAM_JOURNAL:-var/broker-journal.db}

# A second stack would fight the first one for every port: say so instead.
if "$BIN/supervisorctl" -c "$CONFIG" pid >/dev/null 2>&1; then
    echo "tradestream is already running here (supervisorctl -c $CONFIG status);" \
         "stop it with: $BIN/supervisorctl -c $CONFIG shutdown" >&2
    exit 1
fi

# supervisord does not create the folders of its socket and logs. The bus is unix
# sockets in var/bus/, made 0700 (the broker refuses a folder other users can open).
mkdir -p var/log
[[ -d var/bus ]] || mkdir -m 0700 var/bus

"$BIN/tradestream-admin" migrate
logins=$("$BIN/tradestream-admin" demo)
echo "$logins"
echo

supervisord_pid=
replay_pid=
stop_status=0
stop_stack() {
    trap - EXIT INT TERM
    if [[ -n $replay_pid ]] && kill -0 "$replay_pid" 2>/dev/null; then
        kill -TERM "$replay_pid" 2>/dev/null || true
        wait "$replay_pid" || true
    fi
    if [[ -n $supervisord_pid ]] && kill -0 "$supervisord_pid" 2>/dev/null; then
        echo "stopping tradestream..."
        # supervisord stops the programs in reverse priority order, each with SIGTERM.
        kill -TERM "$supervisord_pid" 2>/dev/null || true
        wait "$supervisord_pid" || stop_status=$?
    fi
}
trap stop_stack EXIT
# Ctrl-C is how a person stops it: a clean stop of every program exits 0.
trap 'stop_stack; exit "$stop_status"' INT
trap 'stop_stack; exit 143' TERM

# Each log's size before this start: the wait below reads only what this run's programs logged.
log_sizes=()
for log in var/log/*.log; do
    [[ -f $log ]] && log_sizes+=("$log=$(wc -c <"$log")")
done

# -u: the user it already is, so that started as root it logs no CRIT line (supervisord.conf).
"$BIN/supervisord" -n -c "$CONFIG" -u "$(id -u)" &
supervisord_pid=$!

# The banner only once every program is RUNNING and listening and both HTTP services answer /healthz
# (the streamer's with the broker and the database up); a program that cannot start ends the run here,
# named with its log (scripts/wait_ready.py).
if ! "$BIN/python" scripts/wait_ready.py "$CONFIG" "$supervisord_pid" "$STARTUP_TIMEOUT_S" \
        --health "$URL/healthz" "$WEBHOOK_URL/healthz" --since ${log_sizes[@]+"${log_sizes[@]}"}; then
    "$BIN/supervisorctl" -c "$CONFIG" status || true
    exit 1
fi

# In the background, at ten times the recorded pace: the 17-minute sample becomes
# about 100 s of live market, its first orders within two seconds. It logs one
# line when done; if it fails, the stack runs on regardless. --restart: the demo
# replays its sample from the first line at every start, even after a Ctrl-C
# stopped the last one midway (without it, a replay resumes where it stopped).
"$BIN/tradestream-replay" --restart --speed "$REPLAY_SPEED" "$SAMPLE" &
replay_pid=$!

cat <<EOF

tradestream is running: open $URL and log in.
The sample trade log is being replayed at ${REPLAY_SPEED}x the recorded pace.
$(echo "$logins" | sed -n '/^Logins:/,/^$/p')
Webhook:  $WEBHOOK_URL/api/webhook
Status:   $BIN/supervisorctl -c $CONFIG status
Journal:  $TRADESTREAM_JOURNAL (the broker keeps its epoch and history across restarts)
Logs:     var/log/
Ctrl-C stops everything.
EOF

# Until Ctrl-C (the INT trap) or supervisord ending by itself (supervisorctl shutdown).
wait "$supervisord_pid"
