#!/usr/bin/env bash
# make test-stack: the compose stack, started for real and driven by the
# platform simulator while containers are killed.
#
# compose.yaml is run through Podman's Docker API with the docker CLI and the
# Compose plugin, on top of deploy/compose/sim.yaml (what the simulator needs
# from the stack) and deploy/compose/offline.yaml (images built FROM scratch
# from static binaries built here, since no registry is reachable; health
# checks without a shell). Then:
#
#   1. build the images and bring the stack up; wait until every container is
#      healthy (start-up time);
#   2. `sdevents sim callbacks --verify` and `sdevents sim sns --verify` from
#      the host against the published ports for STACK_DURATION seconds, while
#      the NATS node leading INGRESS is SIGKILLed at STACK_KILL_NATS_AT and the
#      STACK_KILL_SERVICE container at STACK_KILL_SERVICE_AT; the engine's
#      restart policy brings each back (recovery times);
#   3. both simulators' end-state checks must pass: every accepted request
#      stored once, no overdraft, balances = grants − commits, every image
#      archived once with its SHA-256, one record per job.
#
# The stack is taken down with `docker compose down -v` at the end, also on
# failure, and the Podman service and the health-check loop are stopped.
# Logs, the simulators' JSON summaries and the summary: data/stack/run/
# (copied to $SDTEST_ARTIFACTS/test-stack/ when it is set).
# Nothing leaves loopback and the stack's own bridge network.
#
# What it installs (idempotent; docs/operations.md, "The compose stack,
# tested"): Debian's podman, runc, netavark and aardvark-dns
# (scripts/install-podman.sh, root or sudo), the Compose plugin
# (scripts/install-compose.sh, into .tools/docker/) and MinIO
# (scripts/install-minio.sh, .tools/bin/). The docker CLI must be on PATH.
#
# Environment: STACK_DURATION (seconds of traffic, 60), STACK_RATE (callback
# jobs/s, 4), STACK_SNS_RATE (SNS tasks/s, 2), STACK_KILL_NATS_AT (10),
# STACK_KILL_SERVICE_AT (35), STACK_KILL_SERVICE (ingress),
# STACK_SIM_SUBNET (10.89.213.0/24) and STACK_SIM_HOST (its .1).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

GO=${GO:-go}
DURATION=${STACK_DURATION:-60}
RATE=${STACK_RATE:-4}
SNS_RATE=${STACK_SNS_RATE:-2}
KILL_NATS_AT=${STACK_KILL_NATS_AT:-10}
KILL_SERVICE_AT=${STACK_KILL_SERVICE_AT:-35}
KILL_SERVICE=${STACK_KILL_SERVICE:-ingress}
export STACK_SIM_SUBNET=${STACK_SIM_SUBNET:-10.89.213.0/24}
subnet_base=${STACK_SIM_SUBNET%/*}
export STACK_SIM_HOST=${STACK_SIM_HOST:-${subnet_base%.*}.1}

WORK=data/stack
RUN=$WORK/run
IMAGES=$WORK/images
SIM=$IMAGES/sdevents/sdevents # the static sdevents binary: in the image and on the host
SOCK=$repo/$WORK/podman.sock

export CONTAINERS_CONF=$repo/deploy/compose/podman/containers.conf
export DOCKER_CONFIG=$repo/.tools/docker # the Compose plugin, nothing else
export DOCKER_HOST=unix://$SOCK
COMPOSE=(docker compose -f compose.yaml -f deploy/compose/sim.yaml -f deploy/compose/offline.yaml)
PUBLISHED=(127.0.0.1:8080 127.0.0.1:8081 127.0.0.1:8082 127.0.0.1:4222 127.0.0.1:8222 127.0.0.1:9000 127.0.0.1:9001)

log() { printf '%s  %s\n' "$(date +%T)" "$*"; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
secs() { # milliseconds → seconds with one decimal
	printf '%d.%d' $(($1 / 1000)) $((($1 % 1000) / 100))
}
SUMMARY=()
note() { SUMMARY+=("$*"); log "$*"; }

if [[ "$(id -u)" != 0 ]]; then
	echo "test-stack: run as root: the stack runs in a rootful Podman, and the kills signal its containers' processes" >&2
	exit 1
fi

# Only one run per machine: the project name, the ports and the subnet are fixed.
exec 9>/tmp/sdevents-test-stack.lock
flock -n 9 || { echo "test-stack: another make test-stack is running on this machine" >&2; exit 1; }

log "installing what the stack needs (cached: nothing is done when present)"
bash scripts/install-podman.sh
bash scripts/install-compose.sh
bash scripts/install-minio.sh
command -v docker >/dev/null || { echo "test-stack: the docker CLI (client only) must be on PATH" >&2; exit 1; }

busy() { (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null; }
for addr in "${PUBLISHED[@]}"; do
	if busy "$addr"; then
		echo "test-stack: $addr is in use; the stack publishes it (stop what listens there first)" >&2
		exit 1
	fi
done

log "building the static binaries of the images"
rm -rf "$RUN" && mkdir -p "$RUN" "$IMAGES"/{sdevents,nats,minio}
(
	export CGO_ENABLED=0
	cd cmd/sdevents
	# Stamped as `make build` and the Dockerfile stamp it (sdevents version).
	version=$(git describe --tags --always --dirty 2>/dev/null || true)
	revision=$(git rev-parse HEAD 2>/dev/null || true)
	nice $GO build -trimpath -ldflags="-s -w -X main.version=$version -X main.revision=$revision -X main.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
		-o "$repo/$IMAGES/sdevents/sdevents" .
	# The nats-server of cmd/sdevents/go.mod (the embedded server's version).
	nice $GO build -trimpath -ldflags='-s -w' -o "$repo/$IMAGES/nats/nats-server" github.com/nats-io/nats-server/v2
	cd "$repo/deploy"
	nice $GO build -trimpath -ldflags='-s -w' -o "$repo/$IMAGES/sdevents/healthcheck" ./cmd/healthcheck
)
for d in nats minio; do ln -f "$IMAGES/sdevents/healthcheck" "$IMAGES/$d/healthcheck"; done
ln -f .tools/bin/minio "$IMAGES/minio/minio" 2>/dev/null || cp -f .tools/bin/minio "$IMAGES/minio/minio"
# The local SNS's CA: the ingress reads it at start (sns[0].ca_file).
$SIM sim ca --ca-file $WORK/sim-ca.pem >/dev/null

PODMAN_PID="" HEALTH_PID="" SIM_PIDS=()
cleanup() {
	local rc=$?
	set +e
	for pid in "${SIM_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
	if [[ -n "$PODMAN_PID" ]]; then
		"${COMPOSE[@]}" logs --no-color --timestamps >"$RUN/compose.log" 2>&1
		"${COMPOSE[@]}" ps -a >"$RUN/ps.txt" 2>&1
		log "docker compose down -v"
		local t0
		t0=$(now_ms)
		"${COMPOSE[@]}" down -v --remove-orphans >"$RUN/down.log" 2>&1 || { log "down failed:"; cat "$RUN/down.log"; }
		log "down in $(secs $(($(now_ms) - t0))) s"
	fi
	if [[ -n "$HEALTH_PID" ]]; then
		touch "$RUN/health.stop"
		wait "$HEALTH_PID" 2>/dev/null
	fi
	if [[ -n "$PODMAN_PID" ]]; then
		# Images of earlier runs that a rebuild untagged.
		podman image prune -f --filter label=com.docker.compose.image.builder=classic >/dev/null 2>&1
		kill -TERM "$PODMAN_PID" 2>/dev/null && wait "$PODMAN_PID" 2>/dev/null
	fi
	rm -f "$SOCK" "$RUN/health.stop"
	if [[ -n "${SDTEST_ARTIFACTS:-}" ]]; then
		mkdir -p "$SDTEST_ARTIFACTS/test-stack" && cp -r "$RUN/." "$SDTEST_ARTIFACTS/test-stack/"
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "starting the Podman service on $SOCK"
rm -f "$SOCK"
podman system service --time=0 "unix://$SOCK" >"$RUN/podman.log" 2>&1 9>&- &
PODMAN_PID=$!
for _ in $(seq 1 100); do docker version >/dev/null 2>&1 && break; sleep 0.1; done
docker version --format 'engine {{.Server.Version}} (API {{.Server.APIVersion}}), client {{.Client.Version}}' || exit 1
docker compose version
# A stack left behind by an interrupted run.
"${COMPOSE[@]}" down -v --remove-orphans >/dev/null 2>&1 || true

# Podman runs health checks from systemd timers; without systemd they never
# run and every container stays "starting". This loop runs them instead.
# It stops when cleanup creates $RUN/health.stop.
(
	while [[ ! -e "$RUN/health.stop" ]]; do
		for c in $(podman ps -q --filter label=com.docker.compose.project=sdevents 2>/dev/null); do
			podman healthcheck run "$c" >/dev/null 2>&1 &
		done
		wait
		sleep 2
	done
) 9>&- &
HEALTH_PID=$!

log "building the images"
t0=$(now_ms)
"${COMPOSE[@]}" build >"$RUN/build.log" 2>&1 || { cat "$RUN/build.log"; exit 1; }
note "images built in $(secs $(($(now_ms) - t0))) s"

# containers prints "name id" of every container of the stack.
containers() { docker ps -a --filter label=com.docker.compose.project=sdevents --format '{{.Names}} {{.ID}}'; }
# health ID: the container's health; "exited-<code>" for one that has exited
# (the one-shot "streams" is done once it is exited-0; Podman reports an empty
# health status for a container without a health check).
health() { docker inspect -f '{{if eq .State.Status "exited"}}exited-{{.State.ExitCode}}{{else if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$1" 2>/dev/null; }

# wait_healthy T0 TIMEOUT: wait until every container is healthy (a one-shot:
# exited with status 0), printing each one's time since T0 (ms); fails after
# TIMEOUT seconds.
wait_healthy() {
	local t0=$1 timeout=$2 pending name id h
	declare -A seen=()
	while :; do
		pending=0
		while read -r name id; do
			[[ -n "$name" && -z "${seen[$name]:-}" ]] || continue
			h=$(health "$id")
			if [[ "$h" == healthy || ("$h" == exited-0 && "$name" == *-streams-*) ]]; then
				seen[$name]=1
				log "  $name ${h/exited-0/done} after $(secs $(($(now_ms) - t0))) s"
			else
				pending=$((pending + 1))
			fi
		done < <(containers)
		[[ $pending -eq 0 && ${#seen[@]} -gt 0 ]] && return 0
		if [[ $(($(now_ms) - t0)) -gt $((timeout * 1000)) ]]; then
			log "not healthy after ${timeout} s:"
			docker ps -a --filter label=com.docker.compose.project=sdevents --format '  {{.Names}}: {{.Status}}'
			return 1
		fi
		sleep 0.5
	done
}

log "docker compose up -d"
t0=$(now_ms) t_up=$(now_ms)
"${COMPOSE[@]}" up -d --no-build >"$RUN/up.log" 2>&1 || { cat "$RUN/up.log"; exit 1; }
up_ms=$(($(now_ms) - t0))
wait_healthy "$t0" 240
note "stack up: 'up -d' returned after $(secs $up_ms) s, every container healthy after $(secs $(($(now_ms) - t0))) s"
curl -sf http://127.0.0.1:8080/readyz >/dev/null || { echo "test-stack: the ingress does not answer on 127.0.0.1:8080" >&2; exit 1; }

# monitor NODE PATH: a NATS node's monitoring endpoint, reached on the stack
# network, on one line without spaces.
monitor() {
	local ip
	ip=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "sdevents-$1-1")
	curl -sf --max-time 5 "http://$ip:8222$2" | tr -d ' \n'
}
# snapshot NAME: every node's routes and connections with their
# subscriptions, for the logs.
snapshot() {
	for n in nats-1 nats-2 nats-3; do
		monitor "$n" '/routez?subs=1' >"$RUN/$1-$n-routez.json" || true
		monitor "$n" '/connz?subs=1' >"$RUN/$1-$n-connz.json" || true
	done
}
# The cluster as deploy/compose/nats.conf describes it: every node routed to
# both others with the same number of (pooled) route connections, a
# three-node JetStream meta group, every stream at R3.
counts=""
for n in nats-1 nats-2 nats-3; do
	for peer in nats-1 nats-2 nats-3; do
		[[ $peer == "$n" ]] && continue
		counts+="$(monitor "$n" /routez | grep -o "\"remote_name\":\"$peer\"" | wc -l || true) "
	done
done
read -ra c <<<"$counts"
meta=$(monitor nats-1 /jsz | grep -o '"cluster_size":[0-9]*' | grep -o '[0-9]*$' || true)
streams=$(monitor nats-1 '/jsz?accounts=true&streams=true&config=true' | grep -o '"config":{"name":"[A-Z_]*"' | wc -l || true)
r3=$(monitor nats-1 '/jsz?accounts=true&streams=true&config=true' | grep -o '"num_replicas":3' | wc -l || true)
if [[ ${c[0]} -eq 0 || $(printf '%s\n' "${c[@]}" | sort -u | wc -l) -ne 1 || "$meta" != 3 || $streams -eq 0 || $r3 -ne $streams ]]; then
	snapshot cluster
	echo "test-stack: route connections (1→2 1→3 2→1 2→3 3→1 3→2) $counts; meta group of ${meta:-?}; $r3 of $streams streams at R3" >&2
	exit 1
fi
note "cluster: every node routed to both others (${c[0]} route connections each way), JetStream meta group of 3, all $streams streams R3"

# The quota answers the ingress's synchronous callbacks. No health check
# covers this request/reply path through the cluster: a callback the ingress
# cannot get decided is answered "busy" (quota-unavailable in its log).
t_probe=$(now_ms)
until answer=$($SIM sim send --config deploy/compose/sim-sdevents.yaml --biz-type sdImgGenControlConfig \
	--token stack-probe --invoke-id "probe-$(now_ms)" --body '{}' 2>&1) && [[ "$answer" == 200* && "$answer" != *"credit service is busy"* ]]; do
	if [[ $(($(now_ms) - t_probe)) -gt 60000 ]]; then
		snapshot probe
		echo "test-stack: the ingress gets no decision from the quota service after 60 s: $answer" >&2
		exit 1
	fi
	sleep 0.5
done
note "the quota service answers callbacks through the ingress $(secs $(($(now_ms) - t_up))) s after 'up -d'"

# ingress_leader prints the NATS node leading the INGRESS stream (nats-2 when
# nats-1's monitoring port does not say).
ingress_leader() {
	local l
	l=$(monitor nats-1 '/jsz?accounts=true&streams=true' | grep -o '"name":"INGRESS","created":"[^"]*","cluster":{[^}]*"leader":"nats-[123]"' | grep -o 'nats-[123]"$' | tr -d '"') || true
	echo "${l:-nats-2}"
}

# crash SERVICE: SIGKILL the container's process from the host, as the kernel
# (OOM) or a crash would, and measure until the engine's restart policy has
# it running and healthy again. `docker compose start` is the fallback when
# the engine does not restart it within 30 s.
crash() {
	local svc=$1 id pid t0 restarted="" healthy="" how="restart policy"
	id=$("${COMPOSE[@]}" ps -q "$svc" | head -1)
	pid=$(docker inspect -f '{{.State.Pid}}' "$id")
	t0=$(now_ms)
	kill -KILL "$pid"
	while :; do
		local st npid
		read -r st npid <<<"$(docker inspect -f '{{.State.Status}} {{.State.Pid}}' "$id" 2>/dev/null || true)"
		if [[ -z "$restarted" && "$st" == running && "$npid" != "$pid" && "$npid" != 0 ]]; then
			restarted=$(($(now_ms) - t0))
		fi
		# Run the health check now: the status the engine reports right
		# after a restart may still be the one from before the kill.
		if [[ -n "$restarted" ]] && podman healthcheck run "$id" >/dev/null 2>&1; then
			healthy=$(($(now_ms) - t0))
			break
		fi
		if [[ -z "$restarted" && $(($(now_ms) - t0)) -gt 30000 ]]; then
			how="docker compose start (no restart by the engine)"
			"${COMPOSE[@]}" start "$svc" >/dev/null
		fi
		if [[ $(($(now_ms) - t0)) -gt 180000 ]]; then
			note "SIGKILL $svc: not healthy again after 180 s"
			return 1
		fi
		sleep 0.2
	done
	note "SIGKILL $svc: running again after $(secs "$restarted") s ($how), healthy after $(secs "$healthy") s"
	if [[ "$svc" == ingress ]]; then
		until curl -sf http://127.0.0.1:8080/readyz >/dev/null; do sleep 0.2; done
		note "  the ingress answers on 127.0.0.1:8080 again $(secs $(($(now_ms) - t0))) s after the kill"
	fi
}

sim_common=(--config deploy/compose/sim-sdevents.yaml --duration "${DURATION}s" --drain 3m --verify --settle 5m --no-progress)
export SDEVENTS_SNS_0_CERT_HOSTS=$STACK_SIM_HOST:9443 SDEVENTS_ARCHIVE_ALLOW_HOSTS=$STACK_SIM_HOST:9700

log "simulators for ${DURATION} s: callbacks ($RATE jobs/s) and SNS ($SNS_RATE tasks/s), images on $STACK_SIM_HOST"
t_sim=$(now_ms)
$SIM sim callbacks "${sim_common[@]}" --url http://127.0.0.1:8080 --admin-url http://127.0.0.1:8081 \
	--users 12 --rate "$RATE" --time-scale 0.05 --image-addr "$STACK_SIM_HOST:9700" \
	--json "$RUN/callbacks.json" >"$RUN/callbacks.log" 2>&1 9>&- &
SIM_PIDS+=($!)
$SIM sim sns "${sim_common[@]}" --url http://127.0.0.1:8080 --users 6 --rate "$SNS_RATE" --time-scale 0.25 \
	--duplicates 0.2 --listen "$STACK_SIM_HOST:9443" --ca-file $WORK/sim-ca.pem --s3-bucket sd-output \
	--json "$RUN/sns.json" >"$RUN/sns.log" 2>&1 9>&- &
SIM_PIDS+=($!)

sleep_until() { local s=$(($1 * 1000 - ($(now_ms) - t_sim))); [[ $s -le 0 ]] || sleep "$(secs $s)"; }
status=0
sleep_until "$KILL_NATS_AT"
leader=$(ingress_leader)
log "SIGKILL $leader (the INGRESS stream's leader)"
crash "$leader" || status=1
sleep_until "$KILL_SERVICE_AT"
log "SIGKILL $KILL_SERVICE"
crash "$KILL_SERVICE" || status=1

log "traffic until ${DURATION} s, then the simulators drain and verify"
for i in "${!SIM_PIDS[@]}"; do
	wait "${SIM_PIDS[$i]}" || status=1
done
SIM_PIDS=()
note "simulators done $(secs $(($(now_ms) - t_sim))) s after the traffic started"
for c in $(containers | awk '{print $1}'); do
	n=$(docker inspect -f '{{.RestartCount}}' "$c")
	[[ "$n" == 0 ]] || note "  $c restarted $n time(s)"
done

# The archived images are objects in MinIO's bucket (the archiver created it):
# count them in the volume, as MinIO stores them (one xl.meta per object).
expected=0
for sim in callbacks sns; do
	n=$(grep -o '"images": *[0-9]*' "$RUN/$sim.json" 2>/dev/null | grep -o '[0-9]*$' || echo 0)
	if [[ $n -eq 0 ]]; then
		# Every check passes vacuously when nothing got through.
		note "sim $sim: no image was generated: the traffic did not get through (see $RUN/$sim.log)"
		status=1
	fi
	expected=$((expected + n))
done
volume=$(docker volume inspect sdevents_minio -f '{{.Mountpoint}}' || true)
objects=$(find "$volume/sd-archive" -name xl.meta 2>/dev/null | wc -l || true)
if [[ $objects -ge $expected && $expected -gt 0 ]]; then
	note "MinIO: $objects objects in the bucket sd-archive for $expected images the simulators expected archived"
else
	note "MinIO: $objects objects in the bucket sd-archive, but $expected images were expected archived"
	status=1
fi

for sim in callbacks sns; do
	echo
	echo "--- sim $sim"
	cat "$RUN/$sim.log"
done
echo
echo "--- summary"
printf '%s\n' "${SUMMARY[@]}" | tee "$RUN/summary.txt"
if [[ $status -eq 0 ]]; then
	echo "test-stack passed: the stack came up healthy, recovered from each kill, and every end-state check passed"
else
	echo "test-stack FAILED: see above, and the logs in $RUN/ (compose.log has every container's)" >&2
fi
exit $status
