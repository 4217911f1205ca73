#!/usr/bin/env bash
# raft-kv beside etcd, on this machine, under the same load.
#
#   bench/vs-etcd.sh [--seconds 10] [--levels 1,16,64,256] [--keys 1000]
#                    [--port-base 42100] [--data-root DIR] [--out FILE]
#
# Starts a 3-node raft-kv cluster (`raft-kv serve`, disk storage: its
# write-ahead log appended and fdatasynced once per batch) and a 3-node
# etcd cluster (Debian's etcd-server, etcd 3.4, default settings: its WAL
# is fsynced), every server on 127.0.0.1 only, each node in its own
# fresh data directory.
# Then, at each level of connections, wrk drives each cluster's leader
# over HTTP/1.1 keep-alive for --seconds: writes (a 100-byte value to
# rotating keys; raft-kv `PUT /kv/KEY`, etcd `POST /v3/kv/put`), then
# linearizable reads of the same keys (raft-kv `GET /kv/KEY`, etcd
# `POST /v3/kv/range`, linearizable by default). The two systems take
# turns at every level, so a change in the machine's other load falls on
# both; before each run the script calls sync and waits a second, so that
# the writes of the run before are not flushed during this one, and before
# the first, each cluster gets 2 s of writes that are not recorded. Every key is written once before the first run, so reads find it.
#
# Prints a markdown table (throughput, p50, p99, and raft-kv/etcd) and
# writes it to target/bench/vs-etcd.md. Exits non-zero if any run had more
# than 1% errors (answers of 400 or more, socket errors, answers slower
# than wrk's 5 s timeout) or a leader changed during a run. Servers' logs
# are kept in target/bench/vs-etcd-logs/; the data directories are removed
# on exit, and every process the script started is stopped.
#
# Needs etcd, wrk, curl and jq (`apt-get install -y etcd-server wrk curl jq`;
# run as root, the script installs them itself) and cargo, to build raft-kv
# in release mode (CARGO_TARGET_DIR is honoured).
set -euo pipefail

seconds=10
levels=1,16,64,256
keys=1000
port_base=42100
data_root=""
out=""
usage() { sed -n '2,4p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --levels) levels=$2; shift 2 ;;
    --keys) keys=$2; shift 2 ;;
    --port-base) port_base=$2; shift 2 ;;
    --data-root) data_root=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "vs-etcd: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done
[[ $seconds =~ ^[1-9][0-9]*$ ]] || { echo "vs-etcd: --seconds must be a whole number of seconds, at least 1" >&2; exit 2; }
[[ $levels =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || { echo "vs-etcd: --levels must look like 1,16,64,256" >&2; exit 2; }
if ! [[ $keys =~ ^[1-9][0-9]*$ && $keys -le 100000 ]]; then echo "vs-etcd: --keys must be 1 to 100000" >&2; exit 2; fi
if ! [[ $port_base =~ ^[1-9][0-9]*$ && $port_base -le 65000 ]]; then echo "vs-etcd: --port-base must be 1 to 65000" >&2; exit 2; fi
IFS=, read -r -a level_list <<<"$levels"

repo=$(cd "$(dirname "$0")/.." && pwd)
bench_dir="$repo/target/bench"
out=${out:-$bench_dir/vs-etcd.md}
logs="$bench_dir/vs-etcd-logs"
lua="$repo/bench/vs-etcd.lua"
# The longest a single answer may take before wrk counts it as an error;
# raft-kv answers 504 after 5 s itself.
wrk_timeout_s=5
# Most threads wrk uses: one per core, so that it does not crowd the servers.
cores=$(nproc)

log() { echo "vs-etcd: $*" >&2; }
die() { log "$*"; exit 1; }

# --- tools ------------------------------------------------------------------
missing=()
for tool in etcd wrk curl jq; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  install="apt-get update && apt-get install -y etcd-server wrk curl jq"
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    log "installing ${missing[*]}: $install"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server wrk curl jq >&2
  else
    die "missing ${missing[*]}; install them with: sudo sh -c '$install'"
  fi
fi
etcd_version=$(etcd --version | sed -n 's/^etcd Version: //p')
case "$etcd_version" in
  3.4.*) ;;
  *) log "warning: etcd $etcd_version, not the 3.4 this script was written for" ;;
esac

log "building raft-kv (release)"
(cd "$repo" && cargo build --release --quiet -p raft-tokio --bin raft-kv)
raft_kv="${CARGO_TARGET_DIR:-$repo/target}/release/raft-kv"
[ -x "$raft_kv" ] || die "no binary at $raft_kv after the build"

# --- processes and cleanup --------------------------------------------------
mkdir -p "$bench_dir" "$logs"
data_root=${data_root:-$bench_dir}
mkdir -p "$data_root"
data=$(mktemp -d "$data_root/vs-etcd-data.XXXXXX")
case "$(stat -f -c %T "$data")" in
  tmpfs | ramfs) log "warning: $data is in memory ($(stat -f -c %T "$data")): fsync costs nothing there" ;;
esac
pids=()
cleanup() {
  local status=$?
  # A second Ctrl-C must not cut the cleanup short.
  trap '' INT TERM
  trap - EXIT
  if [ ${#pids[@]} -gt 0 ]; then
    kill "${pids[@]}" 2>/dev/null || true
    # etcd shuts down gracefully on SIGTERM; give it 10 s, then SIGKILL.
    for _ in $(seq 100); do
      local alive=0
      for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
      [ $alive -eq 0 ] && break
      sleep 0.1
    done
    kill -KILL "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
  fi
  rm -rf "$data"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for offset in 1 2 3 11 12 13 21 22 23 31 32 33; do
  port_free $((port_base + offset)) || die "port $((port_base + offset)) on 127.0.0.1 is in use; choose others with --port-base"
done

# raft-kv: HTTP on base+1..3, Raft on base+11..13.
kv_http() { echo "127.0.0.1:$((port_base + $1))"; }
{
  echo 'cluster_id = "vs-etcd"'
  for i in 1 2 3; do
    printf '[[node]]\nid = %d\nraft = "127.0.0.1:%d"\nhttp = "%s"\n' "$i" $((port_base + 10 + i)) "$(kv_http "$i")"
  done
} >"$data/raft-kv.toml"
for i in 1 2 3; do
  RUST_LOG=warn "$raft_kv" serve --id "$i" --config "$data/raft-kv.toml" --data-dir "$data/raft-kv-$i" \
    >"$logs/raft-kv-$i.log" 2>&1 &
  pids+=($!)
done

# etcd: clients on base+21..23, peers on base+31..33.
etcd_client() { echo "127.0.0.1:$((port_base + 20 + $1))"; }
initial_cluster="e1=http://127.0.0.1:$((port_base + 31)),e2=http://127.0.0.1:$((port_base + 32)),e3=http://127.0.0.1:$((port_base + 33))"
for i in 1 2 3; do
  etcd --name "e$i" --data-dir "$data/etcd-$i" \
    --listen-client-urls "http://$(etcd_client "$i")" --advertise-client-urls "http://$(etcd_client "$i")" \
    --listen-peer-urls "http://127.0.0.1:$((port_base + 30 + i))" \
    --initial-advertise-peer-urls "http://127.0.0.1:$((port_base + 30 + i))" \
    --initial-cluster "$initial_cluster" --initial-cluster-state new --initial-cluster-token "vs-etcd-$$" \
    --logger zap --log-outputs stderr --log-level warn \
    >"$logs/etcd-$i.log" 2>&1 &
  pids+=($!)
done

# --- leaders ----------------------------------------------------------------
# Each prints the leader's HTTP address, or nothing while there is none.
raft_kv_leader() {
  local i
  for i in 1 2 3; do
    if curl -sf --max-time 1 "http://$(kv_http "$i")/status" | jq -e '.role == "leader"' >/dev/null 2>&1; then
      kv_http "$i"
      return
    fi
  done
}
etcd_leader() {
  local i
  for i in 1 2 3; do
    # The ids are 64-bit, so jq compares them as the strings the gateway sends.
    if curl -sf --max-time 1 -X POST "http://$(etcd_client "$i")/v3/maintenance/status" -d '{}' |
      jq -e '.leader != null and .leader != "0" and .leader == .header.member_id' >/dev/null 2>&1; then
      etcd_client "$i"
      return
    fi
  done
}
wait_for_leader() { # name function
  local leader=""
  for _ in $(seq 150); do
    leader=$($2)
    [ -n "$leader" ] && { echo "$leader"; return; }
    sleep 0.2
  done
  die "$1 elected no leader within 30 s; see $logs"
}
kv_leader=$(wait_for_leader raft-kv raft_kv_leader)
etcd_leader_addr=$(wait_for_leader etcd etcd_leader)
log "raft-kv leader http://$kv_leader, etcd leader http://$etcd_leader_addr"

# --- the keys, written once ---------------------------------------------------
# One curl per system, one connection, one request per key, in order; curl
# prints each answer's status. A config file's `next` starts the options of
# the next request afresh, so each request repeats them.
per_request='silent\noutput = "/dev/null"\nwrite-out = "%%{http_code}\\n"\nmax-time = 10\n'
value=$(printf '0123456789%.0s' $(seq 10))
value_b64=$(printf %s "$value" | base64 -w0)
fill() { # name config-file
  local codes
  codes=$(curl -K "$2" | sort | uniq -c | tr -s ' ')
  if ! [[ $codes =~ ^\ ?$keys\ 2[0-9][0-9]$ ]]; then
    die "$1: writing the $keys keys got the statuses (count status): ${codes//$'\n'/;}"
  fi
}
{
  for k in $(seq 0 $((keys - 1))); do
    [ "$k" -eq 0 ] || echo next
    printf "${per_request}"'url = "http://%s/kv/bench-%06d"\nrequest = "PUT"\ndata-binary = "%s"\n' "$kv_leader" "$k" "$value"
  done
} >"$data/fill-raft-kv.curl"
# Every key is 12 bytes, a multiple of 3, so the base64 of all keys in a row
# is the base64 of each, 16 characters apiece.
keys_b64=$(for k in $(seq 0 $((keys - 1))); do printf 'bench-%06d' "$k"; done | base64 -w0)
{
  for k in $(seq 0 $((keys - 1))); do
    [ "$k" -eq 0 ] || echo next
    printf "${per_request}"'url = "http://%s/v3/kv/put"\nheader = "Content-Type: application/json"\n' "$etcd_leader_addr"
    printf 'data-binary = "{\\"key\\":\\"%s\\",\\"value\\":\\"%s\\"}"\n' "${keys_b64:$((k * 16)):16}" "$value_b64"
  done
} >"$data/fill-etcd.curl"
log "writing $keys keys to each"
fill raft-kv "$data/fill-raft-kv.curl"
fill etcd "$data/fill-etcd.curl"
# Both must now return the value written (etcd sends it in base64).
[ "$(curl -sf "http://$kv_leader/kv/bench-000000")" = "$value" ] || die "raft-kv does not return the value written"
[ "$(curl -sf -X POST "http://$etcd_leader_addr/v3/kv/range" -d "{\"key\":\"${keys_b64:0:16}\"}" | jq -r '.kvs[0].value')" = "$value_b64" ] ||
  die "etcd does not return the value written"

# --- the runs -----------------------------------------------------------------
failures=()
declare -A result
run() { # system leader-function leader op connections
  local system=$1 leader_of=$2 leader=$3 op=$4 c=$5
  local threads=$((c < cores ? c : cores))
  local line now
  # The other system's writes, still in the page cache, must not be
  # flushed during this run: flush them now, and let the disk settle.
  sync
  sleep 1
  line=$(VS_ETCD_CONNECTIONS=$c timeout $((seconds + 60)) \
    wrk -t "$threads" -c "$c" -d "${seconds}s" --timeout "${wrk_timeout_s}s" -s "$lua" "http://$leader" -- "$system" "$op" "$keys" |
    tee -a "$logs/wrk.log" | grep '^RESULT ') || die "$system $op at $c connections: wrk failed; see $logs/wrk.log"
  local requests duration status_errors socket_errors p50 p99 histogram_ok
  requests=$(sed -n 's/.* requests=\([0-9]*\).*/\1/p' <<<"$line")
  duration=$(sed -n 's/.* duration_us=\([0-9]*\).*/\1/p' <<<"$line")
  status_errors=$(sed -n 's/.* status_errors=\([0-9]*\).*/\1/p' <<<"$line")
  socket_errors=$(sed -n 's/.* socket_errors=\([0-9]*\).*/\1/p' <<<"$line")
  p50=$(sed -n 's/.* p50_us=\([0-9]*\).*/\1/p' <<<"$line")
  p99=$(sed -n 's/.* p99_us=\([0-9]*\).*/\1/p' <<<"$line")
  histogram_ok=$(sed -n 's/.* histogram_ok=\([01]\).*/\1/p' <<<"$line")
  local errors=$((status_errors + socket_errors))
  local ok=$((requests - status_errors))
  result[$system,$op,$c]="$(awk -v n="$ok" -v d="$duration" 'BEGIN { printf "%.1f", n / (d / 1e6) }') $p50 $p99 $errors $requests"
  log "$system $op c=$c: $line"
  if [ $((errors * 100)) -gt "$requests" ]; then
    failures+=("$system $op at $c connections: $errors errors in $requests requests")
    log "FAILED: more than 1% errors ($errors of $requests)"
  fi
  if [ "$histogram_ok" != 1 ]; then
    failures+=("$system $op at $c connections: the latency histogram does not add up (see bench/vs-etcd.lua)")
    log "FAILED: the latency histogram does not add up"
  fi
  now=$($leader_of)
  if [ "$now" != "$leader" ]; then
    failures+=("$system $op at $c connections: the leader moved from $leader to ${now:-none} during the run")
    log "FAILED: the $system leader moved from $leader to ${now:-none}"
  fi
}
: >"$logs/wrk.log"
# A warm-up, not recorded: 2 s of writes over one connection to each, so
# that the first measured run does not also pay for a cluster that has
# just started (caches, the first growth of its files).
warm_up() { # system leader
  VS_ETCD_CONNECTIONS=1 timeout 60 wrk -t 1 -c 1 -d 2s --timeout "${wrk_timeout_s}s" -s "$lua" "http://$2" -- "$1" put "$keys" \
    >>"$logs/wrk.log" || die "$1: the warm-up failed; see $logs/wrk.log"
}
warm_up raft-kv "$kv_leader"
warm_up etcd "$etcd_leader_addr"
for c in "${level_list[@]}"; do
  for op in put get; do
    run raft-kv raft_kv_leader "$kv_leader" "$op" "$c"
    run etcd etcd_leader "$etcd_leader_addr" "$op" "$c"
  done
done

# --- the table ----------------------------------------------------------------
fmt_rate() { awk -v x="$1" 'BEGIN { s = sprintf("%.0f", x); t = ""; while (length(s) > 3) { t = "," substr(s, length(s) - 2) t; s = substr(s, 1, length(s) - 3) }; print s t }'; }
fmt_us() { awk -v x="$1" 'BEGIN { if (x < 1000) printf "%d µs", x; else if (x < 10000) printf "%.2f ms", x / 1000; else printf "%.1f ms", x / 1000 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
table() {
  echo "| op | conns | raft-kv req/s | raft-kv p50 | raft-kv p99 | etcd req/s | etcd p50 | etcd p99 | raft-kv/etcd req/s | raft-kv/etcd p50 | raft-kv/etcd p99 | errors (raft-kv, etcd) |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
  local op c kr kp50 kp99 ke kn er ep50 ep99 ee en
  for op in put get; do
    for c in "${level_list[@]}"; do
      read -r kr kp50 kp99 ke kn <<<"${result[raft-kv,$op,$c]}"
      read -r er ep50 ep99 ee en <<<"${result[etcd,$op,$c]}"
      printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s of %s, %s of %s |\n' \
        "$([ "$op" = put ] && echo write || echo read)" "$c" \
        "$(fmt_rate "$kr")" "$(fmt_us "$kp50")" "$(fmt_us "$kp99")" \
        "$(fmt_rate "$er")" "$(fmt_us "$ep50")" "$(fmt_us "$ep99")" \
        "$(ratio "$kr" "$er")" "$(ratio "$kp50" "$ep50")" "$(ratio "$kp99" "$ep99")" "$ke" "$kn" "$ee" "$en"
    done
  done
}
{
  echo "raft-kv ($(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)) and etcd $etcd_version, 3 nodes each on 127.0.0.1, fsync on;"
  echo "wrk over HTTP/1.1 keep-alive to the leader, ${seconds} s per run, 100-byte values, $keys keys;"
  echo "p50 and p99 as measured (wrk's coordinated-omission correction undone, see bench/vs-etcd.lua);"
  echo "$(date -u +%Y-%m-%d), $cores cores ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1))."
  echo
  table
  if [ ${#failures[@]} -gt 0 ]; then
    echo
    echo "FAILED runs (these figures are not to be used):"
    printf -- '- %s\n' "${failures[@]}"
  fi
} | tee "$out"
log "wrote $out"
[ ${#failures[@]} -eq 0 ] || die "${#failures[@]} run(s) failed"
