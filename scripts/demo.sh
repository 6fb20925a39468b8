#!/usr/bin/env bash
# make demo: build bin/sdevents, start `sdevents run` with scripts/demo.yaml,
# drive it with the platform simulator for about 30 seconds, print the summary
# and the end-state checks, and stop. The archived images stay in data/archive
# and the events in the embedded JetStream (data/nats) for you to look at.
#
# Environment: DEMO_DURATION (default 30s), DEMO_USERS (20), DEMO_RATE (jobs/s, 5).
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
CONFIG=scripts/demo.yaml
DURATION=${DEMO_DURATION:-30s}
USERS=${DEMO_USERS:-20}
RATE=${DEMO_RATE:-5}
HTTP=127.0.0.1:8080   # http.addr of scripts/demo.yaml
NATS=127.0.0.1:4222   # nats.embedded.addr
IMAGES=127.0.0.1:9700 # archive.allow_hosts lists it
RUN_ID=demo$(date +%H%M%S)
LOG=data/demo-run.log

busy() { (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null; }
for addr in $HTTP $NATS $IMAGES; do
	if busy "$addr"; then
		echo "demo: $addr is in use (is \`make run\` or another demo running?); stop it first" >&2
		exit 1
	fi
done

echo "==> building bin/sdevents"
(cd cmd/sdevents && $GO build -trimpath -o ../../bin/sdevents .)
mkdir -p data

echo "==> starting sdevents run (log: $LOG)"
./bin/sdevents run --config $CONFIG >"$LOG" 2>&1 &
RUN_PID=$!
stop_run() {
	if kill -0 "$RUN_PID" 2>/dev/null; then
		kill -TERM "$RUN_PID" 2>/dev/null || true
		wait "$RUN_PID" 2>/dev/null || true
	fi
}
trap stop_run EXIT

ready=
for _ in $(seq 1 600); do
	if ! kill -0 "$RUN_PID" 2>/dev/null; then
		echo "demo: sdevents run exited:" >&2
		tail -20 "$LOG" >&2
		exit 1
	fi
	if (exec 3<>"/dev/tcp/${HTTP%:*}/${HTTP#*:}" && printf 'GET /readyz HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$HTTP" >&3 && head -1 <&3 | grep -q ' 200') 2>/dev/null; then
		ready=1
		break
	fi
	sleep 0.1
done
if [ -z "$ready" ]; then
	echo "demo: sdevents run not ready after 60 s" >&2
	tail -20 "$LOG" >&2
	exit 1
fi

echo "==> simulating $USERS users for $DURATION ($RATE jobs/s), then checking the end state"
status=0
./bin/sdevents sim callbacks --config $CONFIG --run-id "$RUN_ID" --users "$USERS" --rate "$RATE" \
	--duration "$DURATION" --image-addr $IMAGES --verify --settle 60s --json data/demo-summary.json || status=$?

echo "==> stopping sdevents run"
stop_run
trap - EXIT

images=$(find data/archive -type f -name '*.png' 2>/dev/null | wc -l | tr -d ' ')
cat <<EOF

The demo left its results behind:
  data/archive/                 $images archived images (<account>/<yyyy>/<mm>/<dd>/<invokeId>/<image>.png)
  data/nats/                    the events: INGRESS, QUOTA, ARCHIVE, JOBS
  data/demo-summary.json        the table and the checks above, as JSON

Look at them with the deployment running again (events are kept across restarts):
  ./bin/sdevents run --config $CONFIG &
  nats stream view QUOTA --server "\$(cat data/nats/downstream.url)"   # or: nats sub 'sd.>' --server ...
  ./bin/sdevents quota balance --config $CONFIG token:sim-$RUN_ID-user-000
  ./bin/sdevents quota ledger  --config $CONFIG token:sim-$RUN_ID-user-000
  ./bin/sdevents replay jobs   --config $CONFIG
(the NATS CLI: go install github.com/nats-io/natscli/nats@v0.5.0)
EOF
exit $status
