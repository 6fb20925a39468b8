#!/usr/bin/env bash
# make soak: the platform simulator (callbacks and SNS) at a sustained rate
# against sdevents while processes are killed with SIGKILL and restarted,
# then the end-state checks (docs/simulator.md):
#
#   phase 1: `sdevents run` (embedded JetStream), killed every 30 s;
#   phase 2: a standalone nats-server and separate ingress / quota / archiver /
#            aggregator processes, one of them killed every 30 s, in turn.
#
# Each phase passes when both simulators' checks pass: zero accepted-but-
# missing events, zero overdrafts, balances = grants − commits, every image
# archived once with its SHA-256, exactly one record per job. The summaries
# are kept in data/soak/*.json.
#
# Environment: SOAK_DURATION (default 5m), SOAK_KILL_EVERY (seconds, 30),
# SOAK_RATE (callback jobs/s, 8), SOAK_SNS_RATE (SNS tasks/s, 4),
# SOAK_PHASES ("1 2").
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
DURATION=${SOAK_DURATION:-5m}
KILL_EVERY=${SOAK_KILL_EVERY:-30}
RATE=${SOAK_RATE:-8}
SNS_RATE=${SOAK_SNS_RATE:-4}
PHASES=${SOAK_PHASES:-1 2}
WORK=data/soak
BIN=./bin/sdevents
NATS_SERVER=.tools/bin/nats-server
MINIO=${SDTEST_MINIO_BIN:-.tools/bin/minio}

# Fixed loopback ports (below the ephemeral range), checked free at start.
HTTP=127.0.0.1:27180      # phase 1 (sdevents run)
EMBEDDED=127.0.0.1:27222
NATS_URL=127.0.0.1:27223  # phase 2 (nats-server)
INGRESS=127.0.0.1:27181 QUOTA=127.0.0.1:27182 ARCHIVER=127.0.0.1:27183 AGGREGATOR=127.0.0.1:27184
IMAGES=127.0.0.1:27700 SNS=127.0.0.1:27443 S3=127.0.0.1:27100 S3_CONSOLE=127.0.0.1:27101

declare -A PIDS=()
cleanup() {
	for name in "${!PIDS[@]}"; do
		kill -KILL "${PIDS[$name]}" 2>/dev/null || true
	done
	wait 2>/dev/null || true
}
trap cleanup EXIT

seconds() { # 5m → 300
	local d=$1
	case $d in *m) echo $((${d%m} * 60)) ;; *s) echo "${d%s}" ;; *) echo "$d" ;; esac
}

# ready ADDR PATH: poll until http://ADDR/PATH answers 200 (60 s at most).
ready() {
	local addr=$1 path=${2:-/readyz}
	for _ in $(seq 1 600); do
		if (exec 3<>"/dev/tcp/${addr%:*}/${addr#*:}" && printf 'GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$path" "$addr" >&3 && head -1 <&3 | grep -q ' 200') 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	echo "soak: $addr$path not ready after 60 s" >&2
	return 1
}

# start NAME LOG CMD...: start a process, remember its pid under NAME.
start() {
	local name=$1 log=$2
	shift 2
	"$@" >>"$log" 2>&1 &
	PIDS[$name]=$!
}

# restart NAME LOG READY-ADDR CMD...: SIGKILL NAME, start it again, wait until ready.
restart() {
	local name=$1 log=$2 addr=$3
	shift 3
	local t0
	t0=$(date +%s%N)
	kill -KILL "${PIDS[$name]}" 2>/dev/null || true
	wait "${PIDS[$name]}" 2>/dev/null || true
	start "$name" "$log" "$@"
	ready "$addr"
	printf '  %s  SIGKILL %-10s ready again in %d ms\n' "$(date +%T)" "$name" $((($(date +%s%N) - t0) / 1000000))
}

busy() { (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null; }
for addr in $HTTP $EMBEDDED $NATS_URL $INGRESS $QUOTA $ARCHIVER $AGGREGATOR $IMAGES $SNS $S3 $S3_CONSOLE; do
	if busy "$addr"; then
		echo "soak: $addr is in use; stop what listens there first" >&2
		exit 1
	fi
done

echo "==> building bin/sdevents and nats-server"
(cd cmd/sdevents && $GO build -trimpath -o ../../bin/sdevents . && $GO build -o ../../$NATS_SERVER github.com/nats-io/nats-server/v2)
if [ ! -x "$MINIO" ]; then
	echo "==> MinIO is missing: building it (scripts/install-minio.sh)"
	bash scripts/install-minio.sh
fi
rm -rf "$WORK" && mkdir -p "$WORK"

echo "==> MinIO on $S3 (the SNS simulator's output bucket)"
MINIO_ROOT_USER=soak MINIO_ROOT_PASSWORD=soak-secret-key MINIO_BROWSER=off MINIO_UPDATE=off \
	start minio "$WORK/minio.log" "$MINIO" server "$WORK/minio" --address $S3 --console-address $S3_CONSOLE
ready $S3 /minio/health/live
$BIN sim ca --ca-file "$WORK/sim-ca.pem" >/dev/null

# config FILE NATS-URL: the soak configuration.
config() {
	cat >"$1" <<EOF
http:
  addr: $HTTP
nats:
  url: "$2"
  embedded:
    addr: $EMBEDDED
    store_dir: $WORK/nats-embedded
callbacks:
  - name: default
    keys:
      - {ak: AK-soak, sk: SK-soak}
      - {ak: AK-soak-rotated, sk: SK-soak-rotated}
sns:
  - name: eks
    topic_arns: ["arn:aws:sns:us-east-1:123456789012:SdOnEKSStack-sdNotificationOutputCfn-abcdefgh"]
    auto_confirm: true
    cert_hosts: ["$SNS"]
    ca_file: $WORK/sim-ca.pem
quota:
  reservation_ttl: 30s
admin:
  token: soak-admin-token
archive:
  dir: $WORK/archive
  allow_hosts: ["$IMAGES"]
  source_s3: {endpoint: "$S3", access_key: soak, secret_key: soak-secret-key, secure: false}
log:
  level: warn
shutdown_timeout: 5s
EOF
}

# simulate PHASE CONFIG URL ADMIN-URL: start both simulators in the background.
simulate() {
	local phase=$1 cfg=$2 url=$3 admin=$4
	start "sim-callbacks" "$WORK/phase$phase-callbacks.log" $BIN sim callbacks --config "$cfg" --url "$url" --admin-url "$admin" \
		--users 24 --rate "$RATE" --credits 200 --duration "$DURATION" --time-scale 0.05 --drain 3m --rotate-keys \
		--image-addr $IMAGES --verify --settle 5m --no-progress --json "$WORK/phase$phase-callbacks.json"
	start "sim-sns" "$WORK/phase$phase-sns.log" $BIN sim sns --config "$cfg" --url "$url" --users 8 --rate "$SNS_RATE" \
		--duration "$DURATION" --time-scale 0.25 --drain 3m --listen $SNS --ca-file "$WORK/sim-ca.pem" \
		--s3-bucket "soak-phase$phase" --duplicates 0.2 --verify --settle 5m --no-progress --json "$WORK/phase$phase-sns.json"
}

# finish PHASE: wait for both simulators, print their output, return failure if one failed.
finish() {
	local phase=$1 rc=0
	for sim in callbacks sns; do
		wait "${PIDS[sim-$sim]}" || rc=1
		unset "PIDS[sim-$sim]"
		echo
		echo "--- phase $phase, sim $sim"
		cat "$WORK/phase$phase-$sim.log"
	done
	return $rc
}

sims_running() { kill -0 "${PIDS[sim-callbacks]}" 2>/dev/null || kill -0 "${PIDS[sim-sns]}" 2>/dev/null; }

status=0
total=$(seconds "$DURATION")

if [[ " $PHASES " == *" 1 "* ]]; then
	echo "==> phase 1: sdevents run, SIGKILL every ${KILL_EVERY}s for $DURATION"
	config "$WORK/phase1.yaml" ""
	run=($BIN run --config "$WORK/phase1.yaml")
	start run "$WORK/phase1-run.log" "${run[@]}"
	ready $HTTP
	simulate 1 "$WORK/phase1.yaml" "http://$HTTP" "http://$HTTP"
	t0=$(date +%s)
	while sims_running && [ $(($(date +%s) - t0 + KILL_EVERY)) -le "$total" ]; do
		sleep "$KILL_EVERY"
		restart run "$WORK/phase1-run.log" $HTTP "${run[@]}"
	done
	echo "  traffic over; the simulators drain, then verify"
	finish 1 || status=1
	kill -TERM "${PIDS[run]}" && wait "${PIDS[run]}" || true
	unset "PIDS[run]"
fi

if [[ " $PHASES " == *" 2 "* ]]; then
	echo "==> phase 2: nats-server + ingress, quota, archiver, aggregator; one SIGKILLed every ${KILL_EVERY}s, in turn"
	config "$WORK/phase2.yaml" "nats://$NATS_URL"
	start nats "$WORK/phase2-nats.log" $NATS_SERVER -js -sd "$WORK/nats-server" -a 127.0.0.1 -p "${NATS_URL#*:}"
	for _ in $(seq 1 100); do busy $NATS_URL && break; sleep 0.1; done
	declare -A ADDR=([ingress]=$INGRESS [quota]=$QUOTA [archiver]=$ARCHIVER [aggregator]=$AGGREGATOR)
	svc() { echo env SDEVENTS_HTTP_ADDR="${ADDR[$1]}" $BIN "$1" --config "$WORK/phase2.yaml"; }
	for s in ingress quota archiver aggregator; do
		# shellcheck disable=SC2046
		start "$s" "$WORK/phase2-$s.log" $(svc $s)
	done
	for s in ingress quota archiver aggregator; do ready "${ADDR[$s]}" /healthz; done
	ready $INGRESS
	simulate 2 "$WORK/phase2.yaml" "http://$INGRESS" "http://$QUOTA"
	t0=$(date +%s)
	i=0
	order=(ingress quota archiver aggregator)
	while sims_running && [ $(($(date +%s) - t0 + KILL_EVERY)) -le "$total" ]; do
		sleep "$KILL_EVERY"
		s=${order[$((i % 4))]}
		i=$((i + 1))
		# shellcheck disable=SC2046
		restart "$s" "$WORK/phase2-$s.log" "${ADDR[$s]}" $(svc $s)
	done
	echo "  traffic over; the simulators drain, then verify"
	finish 2 || status=1
fi

echo
if [ $status -eq 0 ]; then
	echo "soak passed: every check of every phase (summaries in $WORK/*.json)"
else
	echo "soak FAILED: see the checks above and the logs in $WORK/" >&2
fi
exit $status
