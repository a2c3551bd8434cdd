#!/usr/bin/env bash
# make multinode: two Tongban gateway nodes sharing real Redis, a
# Kafka-protocol broker and PostgreSQL, all on loopback, no container engine.
#
# It builds bin/tongban and bin/tongban-kafka, starts redis-server, the
# development Kafka-protocol broker (kfake), a throwaway PostgreSQL cluster,
# the three simulated departments (tongban simulate) and two gateway nodes
# (tongban serve) with generated configurations, tokens and keys, and then
# shows, printing every command and its result:
#
#   1. grants proposed and approved with the CLI across the two nodes (two
#      admins for a normal dataset; a legal reviewer for a major one);
#   2. a query served live by node A, then by node B from the shared Redis
#      tier (delivery cache);
#   3. a revocation made on node B honoured by node A within a second;
#   4. a correction (校核纠错) raised on node A, listed, shown disputed and
#      resolved on node B, refused a second resolution on node A (one queue
#      in PostgreSQL); then node A and node B resolving one correction at
#      the same time, of which exactly one succeeds;
#   5. /readyz of both nodes with redis and kafka ok, and each node's own
#      signed audit checkpoint.
#
# Every process it starts is stopped on exit. It exits non-zero if any step
# fails. Settings (environment):
#
#   MULTINODE_DIR        working directory (default: a new temporary one,
#                        removed on exit unless MULTINODE_KEEP=1)
#   MULTINODE_KEEP=1     keep the working directory (configs, logs, tokens)
#   MULTINODE_HOLD=1     keep everything running after the checks until Ctrl-C
#   MULTINODE_REVOKE_WITHIN_MS  deadline for the revocation on the other node
#                        (default 1000)
#   MULTINODE_BIN        where the binaries are built (default bin)
#   MULTINODE_NO_BUILD=1 use the existing binaries in MULTINODE_BIN
#   MULTINODE_<NAME>_PORT  first port tried for NAME (REDIS, KAFKA, POSTGRES,
#                        MARKET, APPROVAL, RESOURCES, NODE_A_REST, NODE_A_GRPC,
#                        NODE_B_REST, NODE_B_GRPC); the first free port from
#                        there is used.
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
GO=${GO:-go}
REVOKE_WITHIN_MS=${MULTINODE_REVOKE_WITHIN_MS:-1000}
BIN=${MULTINODE_BIN:-bin}

# ---------------------------------------------------------------- output

if [ -t 1 ]; then B=$'\e[1m'; G=$'\e[32m'; R=$'\e[31m'; D=$'\e[2m'; N=$'\e[0m'; else B= G= R= D= N=; fi
step() { printf '\n%s== %s%s\n' "$B" "$*" "$N"; }
ok() { printf '%s   ok%s  %s\n' "$G" "$N" "$*"; }
info() { printf '   %s\n' "$*"; }
die() {
	printf '%s   FAIL%s  %s\n' "$R" "$N" "$*" >&2
	exit 1
}

# ---------------------------------------------------------------- processes

PIDS=()   # started processes, stopped in reverse order
NAMES=()
WORK=""
PGDIR=""
KEEP=${MULTINODE_KEEP:-0}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [ "$rc" != 0 ] && [ -n "$WORK" ] && [ -d "$WORK/logs" ]; then
		printf '\n%s== logs (last lines)%s\n' "$B" "$N" >&2
		for f in "$WORK"/logs/*.log; do
			[ -s "$f" ] || continue
			printf '%s--- %s%s\n' "$D" "$f" "$N" >&2
			tail -n 15 "$f" >&2 || true
		done
	fi
	if [ "${#PIDS[@]}" -gt 0 ]; then
		printf '\n%s== stopping%s' "$B" "$N"
		local i
		for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
			stop_process "${PIDS[$i]}" "${NAMES[$i]}"
		done
		echo
	fi
	[ -n "$PGDIR" ] && rm -rf "$PGDIR"
	if [ -n "$WORK" ] && [ -d "$WORK" ]; then
		if [ "$KEEP" = 1 ] || [ "$rc" != 0 ]; then
			echo "working directory kept: $WORK"
		else
			rm -rf "$WORK"
		fi
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# stop_process PID NAME: the process was started in its own session
# (setsid), so its process group holds its children too (the gateway's
# connector plugins); TERM the group, wait up to 15 s, then KILL it.
stop_process() {
	local pid=$1 name=$2 sig=TERM i
	[ "$name" = postgres ] && sig=INT # fast shutdown
	kill -0 "$pid" 2>/dev/null || return 0
	printf ' %s' "$name"
	kill -s "$sig" -- "-$pid" 2>/dev/null || kill -s "$sig" "$pid" 2>/dev/null || true
	for ((i = 0; i < 150; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		printf '(killed)'
		kill -s KILL -- "-$pid" 2>/dev/null || kill -s KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
}

# start NAME COMMAND...: runs COMMAND in a new session with its output in
# logs/NAME.log and remembers its PID.
start() {
	local name=$1
	shift
	setsid "$@" >"$WORK/logs/$name.log" 2>&1 </dev/null &
	PIDS+=("$!")
	NAMES+=("$name")
}

pid_of() {
	local i
	for ((i = 0; i < ${#NAMES[@]}; i++)); do
		[ "${NAMES[$i]}" = "$1" ] && echo "${PIDS[$i]}" && return
	done
}

alive() { kill -0 "$(pid_of "$1")" 2>/dev/null; }

# wait_for NAME SECONDS TEST...: polls TEST every 0.1 s until it succeeds,
# failing when NAME exits or SECONDS pass.
wait_for() {
	local name=$1 secs=$2 i
	shift 2
	for ((i = 0; i < secs * 10; i++)); do
		if "$@" >/dev/null 2>&1; then return 0; fi
		alive "$name" || die "$name exited (see $WORK/logs/$name.log)"
		sleep 0.1
	done
	die "$name not ready after ${secs}s (see $WORK/logs/$name.log)"
}

tcp_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# port VAR NAME DEFAULT: sets VAR to the first port from $MULTINODE_NAME_PORT
# (or DEFAULT) that nothing listens on and this script has not handed out.
TAKEN=" "
port() {
	local var="MULTINODE_$2_PORT" start p
	start=${!var:-$3}
	for ((p = start; p < start + 200; p++)); do
		case "$TAKEN" in *" $p "*) continue ;; esac
		if ! tcp_open "$p"; then
			TAKEN+="$p "
			printf -v "$1" %s "$p"
			return
		fi
	done
	die "no free port in $start..$((start + 199)) for $2"
}

rand_hex() { od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }
rand_b64() { head -c "$1" /dev/urandom | base64 | tr -d '\n'; }
sha256() { printf %s "$1" | sha256sum | cut -d' ' -f1; }
now_ms() { date +%s%3N; }

# show CMD: prints CMD as typed and runs it with bash; its output goes to
# $OUT and is printed indented. Tokens appear as $VARIABLES, never values.
OUT=""
show() {
	printf '%s$ %s%s\n' "$D" "$1" "$N"
	local rc=0
	OUT=$(bash -c "$1" 2>&1) || rc=$?
	printf '%s\n' "$OUT" | sed 's/^/    /'
	return "$rc"
}

# field NAME: the first string value of "NAME" in $OUT (JSON).
field() { printf '%s' "$OUT" | grep -o "\"$1\": *\"[^\"]*\"" | head -n1 | sed 's/.*: *"\(.*\)"/\1/'; }

# ---------------------------------------------------------------- checks

step "checking the tools"
for tool in "$GO" redis-server curl sha256sum od base64 setsid; do
	command -v "$tool" >/dev/null || die "$tool not found (apt-get install redis-server postgresql curl)"
done
# Debian keeps the server binaries in /usr/lib/postgresql/VERSION/bin.
PGBIN=$(dirname "$(readlink -f "$(command -v initdb 2>/dev/null || ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n1)")")
[ -x "$PGBIN/initdb" ] && [ -x "$PGBIN/postgres" ] && [ -x "$PGBIN/psql" ] || die "PostgreSQL not found (apt-get install postgresql)"
ok "go, redis-server $(redis-server --version | grep -o 'v=[0-9.]*' | cut -c3-), PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}'), curl"

if [ -n "${MULTINODE_DIR:-}" ]; then
	WORK=$MULTINODE_DIR
	mkdir -p "$WORK"
else
	WORK=$(mktemp -d "${TMPDIR:-/tmp}/tongban-multinode.XXXXXX")
fi
WORK=$(cd "$WORK" && pwd)
mkdir -p "$WORK/logs"
info "working directory: $WORK"

if [ "${MULTINODE_NO_BUILD:-0}" != 1 ]; then
	step "building $BIN/tongban and $BIN/tongban-kafka"
	mkdir -p "$BIN"
	"$GO" build -o "$BIN/tongban" ./cmd/tongban
	"$GO" build -o "$BIN/tongban-kafka" ./cmd/tongban-kafka
	ok "built"
fi
TB=$BIN/tongban # as shown in the printed commands
TONGBAN=$(cd "$BIN" && pwd)/tongban
KAFKA_BROKER=$(cd "$BIN" && pwd)/tongban-kafka
[ -x "$TONGBAN" ] && [ -x "$KAFKA_BROKER" ] || die "$BIN/tongban or $BIN/tongban-kafka missing"

port REDIS_PORT REDIS 16379
port KAFKA_PORT KAFKA 19092
port PG_PORT POSTGRES 15432
port MARKET_PORT MARKET 18101
port APPROVAL_PORT APPROVAL 18102
port RESOURCES_PORT RESOURCES 18103
port A_REST NODE_A_REST 18080
port A_GRPC NODE_A_GRPC 19090
port B_REST NODE_B_REST 18081
port B_GRPC NODE_B_GRPC 19091

# ---------------------------------------------------------------- shared services

step "starting the shared services on loopback"
start redis redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" --protected-mode yes
wait_for redis 20 tcp_open "$REDIS_PORT"
ok "redis-server            127.0.0.1:$REDIS_PORT  (--save '')"

start kafka "$KAFKA_BROKER" --addr "127.0.0.1:$KAFKA_PORT" --data-dir "$WORK/kafka"
wait_for kafka 20 tcp_open "$KAFKA_PORT"
ok "Kafka-protocol broker   127.0.0.1:$KAFKA_PORT  ($BIN/tongban-kafka, kfake)"

# A throwaway cluster in its own temporary directory (the postgres user
# must be able to reach it when this runs as root).
PGDIR=$(mktemp -d /tmp/tongban-multinode-pg.XXXXXX)
RUNAS=()
if [ "$(id -u)" = 0 ]; then
	id postgres >/dev/null 2>&1 || die "running as root needs a postgres user"
	chmod 0711 "$PGDIR"
	chown postgres: "$PGDIR"
	RUNAS=(setpriv --reuid postgres --regid postgres --init-groups --)
fi
"${RUNAS[@]}" "$PGBIN/initdb" -D "$PGDIR/data" -U postgres -A trust --no-sync -E UTF8 --locale=C >"$WORK/logs/initdb.log" 2>&1 ||
	die "initdb failed (see $WORK/logs/initdb.log)"
start postgres "${RUNAS[@]}" "$PGBIN/postgres" -D "$PGDIR/data" -p "$PG_PORT" -k "$PGDIR" -h 127.0.0.1 \
	-c fsync=off -c synchronous_commit=off -c full_page_writes=off
wait_for postgres 30 grep -q "ready to accept connections" "$WORK/logs/postgres.log"
wait_for postgres 10 "$PGBIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -Atqc 'select 1'
"$PGBIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -qc 'CREATE DATABASE tongban' >/dev/null
ok "PostgreSQL              127.0.0.1:$PG_PORT  (initdb in $PGDIR, database tongban)"

start simulators "$TONGBAN" simulate --market-port "$MARKET_PORT" --approval-port "$APPROVAL_PORT" \
	--resources-port "$RESOURCES_PORT" --env-file "$WORK/simulators.env" --connectors-file "$WORK/connectors.yaml"
wait_for simulators 60 test -s "$WORK/simulators.env"
# shellcheck disable=SC1091
. "$WORK/simulators.env"
ok "simulated departments   market $MARKET_URL, approval $APPROVAL_URL, resources $RESOURCES_URL"

# ---------------------------------------------------------------- secrets and configs

step "generating tokens, keys and the two node configurations"
umask 077
declare -A TOKENS
for who in APPROVAL ADMIN_LI ADMIN_ZHAO REVIEWER AUDITOR; do
	TOKENS[$who]="tb_$(rand_hex 32)"
	export "${who}_TOKEN=${TOKENS[$who]}"
done
{
	for who in APPROVAL ADMIN_LI ADMIN_ZHAO REVIEWER AUDITOR; do echo "${who}_TOKEN=${TOKENS[$who]}"; done
} >"$WORK/tokens.env"
rand_hex 32 >"$WORK/subject.key" # shared: subject hashes agree across nodes
CACHE_KEYS="k1:$(rand_b64 32)"
DSN="postgres://postgres@127.0.0.1:$PG_PORT/tongban?sslmode=disable"

node_config() { # node_config NAME REST GRPC
	local name=$1 dir=$WORK/$1
	mkdir -p "$dir"
	cat <<EOF
# Gateway node $name, generated by deploy/multinode/run.sh.
# Secrets come from the environment: TONGBAN_STORE_DSN, TONGBAN_CACHE_KEYS.
node: $name
server:
  rest_addr: 127.0.0.1:$2
  grpc_addr: 127.0.0.1:$3
  request_timeout: 10s
identities:
  - {token_sha256: $(sha256 "${TOKENS[APPROVAL]}"), system_id: approval-bureau, department: approval, region: "130100"}
  - {token_sha256: $(sha256 "${TOKENS[ADMIN_LI]}"), system_id: admin-li, department: data-bureau, roles: [admin]}
  - {token_sha256: $(sha256 "${TOKENS[ADMIN_ZHAO]}"), system_id: admin-zhao, department: data-bureau, roles: [admin]}
  - {token_sha256: $(sha256 "${TOKENS[REVIEWER]}"), system_id: reviewer-chen, department: justice, roles: [legal_reviewer]}
  - {token_sha256: $(sha256 "${TOKENS[AUDITOR]}"), system_id: auditor-sun, department: audit, roles: [auditor]}
store:
  driver: postgres            # dsn from TONGBAN_STORE_DSN
audit:
  dir: $dir/audit             # per node: each node keeps and signs its own log
  signing_key_file: $dir/audit.key
  subject_key_file: $WORK/subject.key
  export_cursor_file: $dir/audit-export.cursor
  checkpoint_every: 1000
  checkpoint_interval: 2s
# forms.corrections_path is unused: the correction queue is the table
# "corrections" in PostgreSQL, shared by both nodes.
cache:
  max_bytes: 67108864
  redis:
    addrs: [127.0.0.1:$REDIS_PORT]
    key_prefix: "tongban:"
    timeout: 500ms
events:
  kafka:
    brokers: [127.0.0.1:$KAFKA_PORT]
    partitions: 3
    replication_factor: 1
log:
  level: info
  format: text
EOF
	cat "$WORK/connectors.yaml"
}
node_config node-a "$A_REST" "$A_GRPC" >"$WORK/node-a.yaml"
node_config node-b "$B_REST" "$B_GRPC" >"$WORK/node-b.yaml"
umask 022
export TONGBAN_STORE_DSN=$DSN TONGBAN_CACHE_KEYS=$CACHE_KEYS
for n in node-a node-b; do
	"$TONGBAN" serve --config "$WORK/$n.yaml" --check >/dev/null || die "$WORK/$n.yaml is not valid"
done
ok "tokens in $WORK/tokens.env (0600); configs store only their SHA-256"
ok "$WORK/node-a.yaml and node-b.yaml pass tongban serve --check"

# ---------------------------------------------------------------- gateway nodes

step "starting two gateway nodes (tongban serve)"
export NODE_A="http://127.0.0.1:$A_REST" NODE_B="http://127.0.0.1:$B_REST"
ready() { curl -fsS --max-time 2 "$1/readyz"; }
# One after the other, for readable logs (concurrent starts are safe: the
# schema migration takes an advisory lock, topic creation tolerates
# existing topics).
start node-a "$TONGBAN" serve --config "$WORK/node-a.yaml"
wait_for node-a 90 ready "$NODE_A"
ok "node-a  $NODE_A (REST), 127.0.0.1:$A_GRPC (gRPC)"
start node-b "$TONGBAN" serve --config "$WORK/node-b.yaml"
wait_for node-b 90 ready "$NODE_B"
ok "node-b  $NODE_B (REST), 127.0.0.1:$B_GRPC (gRPC)"
info "tokens are in \$APPROVAL_TOKEN, \$ADMIN_LI_TOKEN, \$ADMIN_ZHAO_TOKEN, \$REVIEWER_TOKEN, \$AUDITOR_TOKEN"
info "(source $WORK/tokens.env with MULTINODE_KEEP=1 or MULTINODE_HOLD=1)"

# ---------------------------------------------------------------- 1. grants

step "1. grants: proposed on one node, approved on the other (PostgreSQL store, Kafka propagation)"
show "$TB grants propose --url \$NODE_A --token \$ADMIN_LI_TOKEN --dataset market.business_licences \\
    --system approval-bureau --fields credit_code,name,legal_representative,legal_representative_id,status,address \\
    --mask legal_representative_id=resident_id --purpose approval --jurisdiction 1301 \\
    --legal-basis '《优化营商环境条例》第三十五条'" || die "propose failed"
LICENCE_GRANT=$(printf '%s' "$OUT" | awk '/^grant /{print $2; exit}')
[ -n "$LICENCE_GRANT" ] || die "no grant id in the output"
show "$TB grants review $LICENCE_GRANT --url \$NODE_B --token \$ADMIN_ZHAO_TOKEN --approve --opinion '同意'" || die "review failed"
grep -q '\[active\]' <<<"$OUT" || die "grant $LICENCE_GRANT is not active"
ok "normal dataset: proposed by admin-li on node-a, approved by admin-zhao on node-b"

show "$TB grants propose --url \$NODE_B --token \$ADMIN_LI_TOKEN --dataset market.enterprises \\
    --system approval-bureau --fields credit_code,name,industry_name,employees,status --purpose approval \\
    --jurisdiction 1301 --legal-basis '《优化营商环境条例》第三十五条'" || die "propose failed"
ENTERPRISE_GRANT=$(printf '%s' "$OUT" | awk '/^grant /{print $2; exit}')
[ -n "$ENTERPRISE_GRANT" ] || die "no grant id in the output"
grep -q 'legal review:  required' <<<"$OUT" || die "market.enterprises should need legal review"
if show "$TB grants review $ENTERPRISE_GRANT --url \$NODE_A --token \$ADMIN_ZHAO_TOKEN --approve --opinion '同意'"; then
	die "an admin approved a grant on a major dataset"
fi
grep -q 'HTTP 403' <<<"$OUT" || die "want HTTP 403 for an admin reviewing a major dataset"
ok "an admin may not approve a grant on the major dataset market.enterprises (403)"
show "$TB grants review $ENTERPRISE_GRANT --url \$NODE_A --token \$REVIEWER_TOKEN --approve \\
    --opinion '符合最小必要原则，同意共享'" || die "legal review failed"
grep -q '\[active\]' <<<"$OUT" || die "grant $ENTERPRISE_GRANT is not active"
ok "major dataset: proposed on node-b, approved by legal reviewer reviewer-chen on node-a"

# ---------------------------------------------------------------- 2. queries

step "2. one query, either node: node-a fetches live, node-b answers from the shared Redis tier"
BODY="{\"keys\": {\"credit_code\": \"$SAMPLE_CREDIT_CODE\"}, \"purpose\": \"approval\"}"
QUERY="curl -s -w '\\nHTTP %{http_code}\\n' -H \"Authorization: Bearer \$APPROVAL_TOKEN\" -X POST \\
    \$NODE_X/v1/datasets/market.business_licences:query -d '$BODY'"
# The approval was made on node-b; node-a hears of it through Kafka (or its
# store poll). Wait for it, bounded, asking for another enterprise so that
# the sample's record is not yet cached.
t0=$(now_ms)
for ((i = 0; i < 2000; i++)); do
	code=$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $APPROVAL_TOKEN" -X POST \
		"$NODE_A/v1/datasets/market.business_licences:query" \
		-d "{\"keys\": {\"credit_code\": \"$OTHER_CREDIT_CODE\"}, \"purpose\": \"approval\"}")
	[ "$code" != 403 ] && break
	(($(now_ms) - t0 > 30000)) && break
	sleep 0.05
done
[ "$code" != 403 ] || die "node-a does not know the grant approved on node-b after 30s"
info "node-a knew of the approval made on node-b within $(($(now_ms) - t0)) ms of the review"
show "${QUERY//\$NODE_X/\$NODE_A}" || die "query on node-a failed"
grep -q '^HTTP 200' <<<"$OUT" || die "query on node-a: want HTTP 200"
[ "$(field delivery)" = DELIVERY_LIVE ] || die "node-a: want delivery DELIVERY_LIVE, got $(field delivery)"
ok "node-a: HTTP 200, delivery $(field delivery), record of $(field name), legal representative ID $(field legal_representative_id)"
show "${QUERY//\$NODE_X/\$NODE_B}" || die "query on node-b failed"
grep -q '^HTTP 200' <<<"$OUT" || die "query on node-b: want HTTP 200"
[ "$(field delivery)" = DELIVERY_CACHE ] || die "node-b: want delivery DELIVERY_CACHE (shared Redis tier), got $(field delivery)"
ok "node-b: HTTP 200, delivery $(field delivery): node-b never called the department, it read node-a's sealed entry from Redis"
if command -v redis-cli >/dev/null; then
	show "redis-cli -p $REDIS_PORT --scan --pattern 'tongban:v:*' | head -n 3" || true
fi

# ---------------------------------------------------------------- 3. revocation

step "3. revocation on node-b, honoured by node-a"
show "$TB grants revoke $LICENCE_GRANT --url \$NODE_B --token \$ADMIN_LI_TOKEN --reason '营业执照共享协议终止'" ||
	die "revoke failed"
t0=$(now_ms)
grep -q '\[revoked\]' <<<"$OUT" || die "grant $LICENCE_GRANT is not revoked"
# Poll until the refusal arrives or the deadline (plus a second, to report
# a late arrival as such) has passed; bounded in count as well.
for ((i = 0; i < 5000; i++)); do
	code=$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $APPROVAL_TOKEN" -X POST \
		"$NODE_A/v1/datasets/market.business_licences:query" -d "$BODY")
	[ "$code" = 403 ] && break
	(($(now_ms) - t0 > REVOKE_WITHIN_MS + 1000)) && break
	sleep 0.02
done
elapsed=$(($(now_ms) - t0))
[ "$code" = 403 ] || die "node-a still answers $code ${elapsed} ms after the revocation on node-b"
ok "node-a refused the query ${elapsed} ms after the revocation on node-b"
[ "$elapsed" -le "$REVOKE_WITHIN_MS" ] || die "the revocation took ${elapsed} ms to reach node-a (limit ${REVOKE_WITHIN_MS} ms)"
show "${QUERY//\$NODE_X/\$NODE_A}" || true
grep -q '^HTTP 403' <<<"$OUT" || die "query on node-a after revocation: want HTTP 403"
ok "node-a: HTTP 403 $(field reason) although the record is still in its cache: policy is decided on every request"
show "${QUERY//\$NODE_X/\$NODE_B}" || true
grep -q '^HTTP 403' <<<"$OUT" || die "query on node-b after revocation: want HTTP 403"
ok "node-b: HTTP 403 $(field reason)"

# ---------------------------------------------------------------- 4. corrections

step "4. corrections: raised on node-a, seen and resolved on node-b (one queue in PostgreSQL)"
# The enterprise register grant (step 1) is still active: the approval
# bureau disputes the number of employees the register holds.
CURL="curl -s -w '\\nHTTP %{http_code}\\n'"
raise() { # raise NODE FIELD VALUE: files a correction through NODE; sets CORR
	show "$CURL -H \"Authorization: Bearer \$APPROVAL_TOKEN\" -X POST \$$1/v1/corrections \\
    -d '{\"form\": \"business_registration_change\", \"applicant_id\": \"$SAMPLE_CREDIT_CODE\", \"field\": \"$2\", \"proposed_value\": \"$3\"}'" ||
		die "raising a correction on $1 failed"
	grep -q '^HTTP 200' <<<"$OUT" || die "raising a correction on $1: want HTTP 200"
	CORR=$(field id)
	[ -n "$CORR" ] && [ "$(field state)" = open ] || die "no open correction in the answer of $1"
}
raise NODE_A employees 58
ok "node-a queued $CORR to department $(field department): $(field dataset) record $(field record_id), value $(field current_value) disputed"
show "$CURL -H \"Authorization: Bearer \$AUDITOR_TOKEN\" \"\$NODE_B/v1/corrections?state=open\"" || die "listing corrections on node-b failed"
grep -q '^HTTP 200' <<<"$OUT" || die "listing corrections on node-b: want HTTP 200"
grep -q "\"$CORR\"" <<<"$OUT" || die "node-b does not list correction $CORR raised on node-a"
ok "node-b lists $CORR (read by auditor-sun)"
show "$TB autofill business_registration_change --url \$NODE_B --token \$APPROVAL_TOKEN --applicant $SAMPLE_CREDIT_CODE" ||
	die "auto-fill on node-b failed"
grep -Eq '从业人数.*disputed' <<<"$OUT" || die "node-b does not show the employees field disputed"
ok "node-b's auto-fill shows the field disputed, with the department's value (the licence fields say why they are empty: step 3 revoked that grant)"
show "$CURL -H \"Authorization: Bearer \$ADMIN_ZHAO_TOKEN\" -X POST \$NODE_B/v1/corrections/$CORR:resolve -d '{}'" ||
	die "resolving $CORR on node-b failed"
grep -q '^HTTP 200' <<<"$OUT" && [ "$(field state)" = resolved ] || die "node-b did not resolve $CORR"
ok "node-b resolved $CORR (admin-zhao)"
show "$CURL -H \"Authorization: Bearer \$ADMIN_LI_TOKEN\" -X POST \$NODE_A/v1/corrections/$CORR:resolve -d '{}'" || true
grep -q '^HTTP 400' <<<"$OUT" || die "node-a resolved $CORR again: want HTTP 400"
ok "node-a: HTTP 400 $(field reason): node-a sees node-b's resolution"

# Both nodes resolve one correction at the same moment: the conditional
# UPDATE lets exactly one through, and only that node records a resolution
# in its audit log.
raise NODE_B industry 餐饮业
info "node-a and node-b resolve $CORR at the same time:"
racers=()
for n in A B; do
	url_var="NODE_$n"
	curl -s --max-time 10 -o "$WORK/resolve-$n.json" -w '%{http_code}' -H "Authorization: Bearer $ADMIN_LI_TOKEN" -X POST \
		"${!url_var}/v1/corrections/$CORR:resolve" -d '{}' >"$WORK/resolve-$n.code" &
	racers+=("$!")
done
wait "${racers[@]}" || true # the codes say what happened
codes="$(cat "$WORK/resolve-A.code") $(cat "$WORK/resolve-B.code")"
for n in A B; do
	OUT=$(cat "$WORK/resolve-$n.json")
	info "node-$n: HTTP $(cat "$WORK/resolve-$n.code")  $(field state)$(field reason)"
done
case "$codes" in
"200 400" | "400 200") ok "exactly one node resolved $CORR; the other got HTTP 400 FAILED_PRECONDITION" ;;
*) die "racing resolutions of $CORR answered HTTP $codes, want one 200 and one 400" ;;
esac

# ---------------------------------------------------------------- 5. readiness, audit

step "5. readiness and the per-node audit logs"
for n in A B; do
	url_var="NODE_$n"
	show "curl -s \$NODE_$n/readyz" || die "readyz of node-$n failed"
	for check in '"redis": *"ok"' '"kafka": *"ok"' '"grants_store": *"ok"' '"status": *"ok"'; do
		grep -Eq "$check" <<<"$OUT" || die "node-$n /readyz lacks $check: $OUT (${!url_var})"
	done
done
ok "both nodes ready: grants_store (PostgreSQL), redis and kafka ok"
sleep 2.5 # one checkpoint interval: both logs sign their latest entries
for n in A B; do
	show "curl -s \$NODE_$n/v1/audit/checkpoint | head -c 400; echo" || die "checkpoint of node-$n failed"
done
ok "each node signs its own log: origins tongban/node-a and tongban/node-b"
for n in A B; do
	show "curl -s \$NODE_$n/metrics | grep -E '^tongban_audit_export_(entries_total|lag_entries)'" ||
		die "node-$n exports no audit metrics"
done
ok "both nodes export their logs to Kafka (entries exported, lag)"

printf '\n%sAll multinode checks passed.%s\n' "$G$B" "$N"
if [ "${MULTINODE_HOLD:-0}" = 1 ]; then
	KEEP=1
	echo "Holding: node-a $NODE_A, node-b $NODE_B; tokens in $WORK/tokens.env. Stop with Ctrl-C."
	while alive node-a && alive node-b; do sleep 1; done
	die "a gateway node exited"
fi
