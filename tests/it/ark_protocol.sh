#!/bin/sh
# Speaks ARK's Node.js federation protocol to a server, as ARK's federation guide
# describes it (port 9000 conventions), and checks the shape of every answer. It knows
# nothing of ark-lattice: any server that passes can stand in for ARK's.
#
# Usage: ark_protocol.sh BASE_URL PEER_URL
#   BASE_URL  the server under test, e.g. http://127.0.0.1:9000 (control API reachable)
#   PEER_URL  another live instance, used as a peer for POST /api/federation/sync
# Needs curl and python3. Exit status 0 when every check passes; each failure is
# printed on stderr.

set -u
BASE=${1:?usage: ark_protocol.sh BASE_URL PEER_URL}
PEER=${2:?usage: ark_protocol.sh BASE_URL PEER_URL}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
FAILURES=0
CHECKS=0

fail() {
    echo "FAIL: $*" >&2
    FAILURES=$((FAILURES + 1))
}

# request METHOD PATH [JSON_BODY]: the status in $STATUS, the body in $WORK/body, the
# headers in $WORK/headers.
request() {
    if [ $# -ge 3 ]; then
        STATUS=$(curl -s -m 30 -X "$1" -H 'Content-Type: application/json' --data "$3" \
            -D "$WORK/headers" -o "$WORK/body" -w '%{http_code}' "$BASE$2")
    else
        STATUS=$(curl -s -m 30 -X "$1" \
            -D "$WORK/headers" -o "$WORK/body" -w '%{http_code}' "$BASE$2")
    fi
    LAST="$1 $2"
}

expect_status() {
    CHECKS=$((CHECKS + 1))
    [ "$STATUS" = "$1" ] || fail "$LAST: status $STATUS, expected $1: $(head -c 300 "$WORK/body")"
}

# check DESCRIPTION PYTHON_EXPRESSION: the expression, with the answer's JSON as `d`
# (and `re`, `json`, `is_int`, `has`), must be true.
check() {
    CHECKS=$((CHECKS + 1))
    if ! python3 - "$WORK/body" "$2" >"$WORK/check" 2>&1 <<'PYTHON'
import json, re, sys
d = json.load(open(sys.argv[1]))
def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)
def urls(value):
    return isinstance(value, list) and all(isinstance(url, str) for url in value)
def has(obj, *names):
    return isinstance(obj, dict) and all(name in obj for name in names)
sys.exit(0 if eval(sys.argv[2]) else 1)
PYTHON
    then
        fail "$LAST: $1 ($2) on $(head -c 300 "$WORK/body") $(tail -n 1 "$WORK/check")"
    fi
}

expect_header() {
    CHECKS=$((CHECKS + 1))
    grep -qi "^$1: *$2" "$WORK/headers" || fail "$LAST: no header '$1: $2' in $(tr -d '\r' <"$WORK/headers" | tr '\n' '|')"
}

urlencode() {
    python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"
}

# --- GET /federation/info --------------------------------------------------------
request GET /federation/info
expect_status 200
expect_header access-control-allow-origin '\*'
check "instance fields" 'has(d, "instanceId", "instanceName", "instanceType", "federationMode", "listenPort", "hubUrl", "autoSync", "syncInterval", "peers", "activePeers", "stats", "timestamp")'
check "field types" 'isinstance(d["instanceId"], str) and isinstance(d["instanceName"], str) and d["instanceType"] in ("local", "cloud", "pi") and d["federationMode"] in ("p2p", "hub", "hybrid") and is_int(d["listenPort"]) and (d["hubUrl"] is None or isinstance(d["hubUrl"], str)) and isinstance(d["autoSync"], bool) and is_int(d["syncInterval"]) and urls(d["peers"]) and urls(d["activePeers"])'
check "stats counters" 'all(is_int(d["stats"].get(name)) for name in ("totalSyncs", "successfulSyncs", "failedSyncs", "nodesSent", "nodesReceived", "conflictsResolved"))'
check "timestamp in milliseconds" 'is_int(d["timestamp"]) and d["timestamp"] > 10**12'
PORT=$(python3 -c 'import urllib.parse, sys; print(urllib.parse.urlparse(sys.argv[1]).port)' "$BASE")
check "listenPort is the port we called" "d['listenPort'] == $PORT"

# --- POST /federation/sync with nodes: an ARK instance pushing a row -------------
ROW='{"id":"ark_protocol_script_row","type":"script_node","language":"bash","category":"Protocol","value":"Row pushed by the protocol script","capabilities":"[\"a\",\"b\"]","dependencies":"[]","examples":"[\"echo hi\"]","content":"echo hi","linked_agents":"[]","created_at":"2025-11-09 10:22:32","updated_at":"2025-11-09 10:22:32","usage_count":0,"success_rate":1.0}'
request POST /federation/sync "{\"instanceId\":\"ark-protocol-script\",\"nodes\":[$ROW]}"
expect_status 200
check "import counts" 'is_int(d.get("imported")) and is_int(d.get("conflicts")) and is_int(d.get("total"))'
check "the row was imported" 'd["imported"] == 1 and d["conflicts"] == 0 and d["total"] == 1'

# --- GET /federation/nodes -------------------------------------------------------
request GET /federation/nodes
expect_status 200
check "node list fields" 'has(d, "instanceId", "count", "nodes") and isinstance(d["nodes"], list) and d["count"] == len(d["nodes"])'
check "list fields are JSON strings" 'all(isinstance(n.get(f), str) and isinstance(json.loads(n[f]), list) for n in d["nodes"] for f in ("capabilities", "dependencies", "examples", "linked_agents"))'
check "created_at is SQLite's datetime" 'all(re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", n.get("created_at") or "") for n in d["nodes"])'
check "row columns" 'all(has(n, "id", "type", "language", "category", "value", "content", "created_at", "updated_at") for n in d["nodes"])'
check "the pushed row is served back" '[json.loads(n["capabilities"]) for n in d["nodes"] if n["id"] == "ark_protocol_script_row"] == [["a", "b"]]'

request GET '/federation/nodes?type=script_node&limit=1'
expect_status 200
check "type filter and limit" 'd["count"] == 1 and d["nodes"][0]["type"] == "script_node"'

# --- POST /federation/sync without nodes: changes since a time -------------------
request POST /federation/sync '{"instanceId":"ark-protocol-script","since":0}'
expect_status 200
check "changes fields" 'has(d, "instanceId", "timestamp", "nodes") and is_int(d["timestamp"]) and isinstance(d["nodes"], list)'
check "changes include the pushed row" 'any(n["id"] == "ark_protocol_script_row" for n in d["nodes"])'
NOW=$(python3 -c 'import time; print(int(time.time() * 1000) + 60000)')
request POST /federation/sync "{\"instanceId\":\"ark-protocol-script\",\"since\":$NOW}"
expect_status 200
check "nothing changed after now" 'd["nodes"] == []'

# --- GET /federation/discover ----------------------------------------------------
request GET /federation/discover
expect_status 200
check "discover fields" 'has(d, "instanceId", "peers", "activePeers", "timestamp") and urls(d["peers"]) and urls(d["activePeers"]) and is_int(d["timestamp"])'

# --- CORS preflight and unknown paths --------------------------------------------
request OPTIONS /federation/sync
CHECKS=$((CHECKS + 1))
case $STATUS in 200 | 204) ;; *) fail "OPTIONS /federation/sync: status $STATUS" ;; esac
expect_header access-control-allow-origin '\*'
expect_header access-control-allow-methods '.*POST'

request GET /no/such/path
expect_status 404
check "error message" 'isinstance(d.get("error"), str) and d["error"] != ""'

# --- the control API -------------------------------------------------------------
request POST /api/federation/peers/add "{\"peerUrl\":\"$PEER\"}"
expect_status 200
check "peer added" 'd.get("status") == "added" and d.get("peerUrl") == "'"$PEER"'" and is_int(d.get("totalPeers"))'
request GET /api/federation/peers
expect_status 200
check "peer listed" "urls(d.get('peers')) and '$PEER' in d['peers'] and is_int(d.get('totalPeers'))"

request POST /api/federation/sync '{}'
expect_status 200
check "sync answer" 'd.get("status") == "synced" and isinstance(d.get("result"), list) and len(d["result"]) >= 1'
check "per-peer results" 'all(has(r, "peer", "success", "nodesSent", "nodesReceived") and isinstance(r["success"], bool) and is_int(r["nodesSent"]) and is_int(r["nodesReceived"]) for r in d["result"])'
check "the peer synced and got our nodes" "[(r['success'], r['nodesSent'] >= 1) for r in d['result'] if r['peer'] == '$PEER'] == [(True, True)]"

request DELETE "/api/federation/peers/$(urlencode "$PEER")"
expect_status 200
request GET /api/federation/peers
expect_status 200
check "peer removed" "'$PEER' not in d['peers']"

if [ "$FAILURES" -gt 0 ]; then
    echo "$FAILURES of $CHECKS checks failed" >&2
    exit 1
fi
echo "all checks passed ($CHECKS)"
