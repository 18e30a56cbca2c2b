#!/usr/bin/env python3
"""Seeds each fuzz target's corpus from the real ARK data (`../shared/data` unless
given) and from the shapes of the protocol messages. Existing corpus files are kept:
seeds are named by their SHA-256, so seeding twice adds nothing.

usage: fuzz/seed.py SHARED_DATA_DIR CORPUS_DIR
"""
import hashlib
import json
import os
import sys

data_dir, corpus_dir = sys.argv[1], sys.argv[2]


def add(target, content):
    if isinstance(content, str):
        content = content.encode()
    directory = os.path.join(corpus_dir, target)
    os.makedirs(directory, exist_ok=True)
    name = hashlib.sha256(content).hexdigest()[:16]
    with open(os.path.join(directory, name), "wb") as out:
        out.write(content)


def rows():
    """Every record of the shared data files, as the files hold them."""
    found = []
    for name in sorted(os.listdir(data_dir)) if os.path.isdir(data_dir) else []:
        if not name.endswith(".json"):
            continue
        path = os.path.join(data_dir, name)
        with open(path, "rb") as handle:
            raw = handle.read()
        # Whole documents only when small: libFuzzer works best on inputs of a few KiB.
        add("import_document", raw[:16384])
        document = json.loads(raw)
        if isinstance(document, list):
            found.extend(document)
        elif isinstance(document, dict):
            for topic in document.get("topics", []):
                found.extend(topic.get("nodes", []))
    return found


records = rows()
if not records:
    print(f"no data in {data_dir}; seeding from the built-in shapes only", file=sys.stderr)
    records = [{"id": "a", "type": "t", "value": "v", "created_at": "2024-01-31 12:00:00"}]

origin = "01" * 32
for index, row in enumerate(records[::8]):
    text = json.dumps(row)
    add("node_from_json", text)
    add("legacy_row", text)
    add("import_document", text + "\n" + text + "\n")
    wire = {
        "id": row.get("id"),
        "version": f"1706702400123.{index}@{origin}",
        "base": None,
        "signature": "A" * 86 + "==",
        "author_key": "A" * 43 + "=",
        "node": row,
    }
    add("wire_record", json.dumps({"instanceId": origin, "records": [wire]}))
    # The same record in a compact changes page: the key once, the signature raw.
    compact = {key: value for key, value in wire.items() if key not in ("signature", "author_key", "base")}
    head = {"instanceId": origin, "epoch": "e", "last_seq": index + 1, "more": False,
            "records": [compact], "author_keys": {origin: wire["author_key"]}}
    add("compact_page", json.dumps(head).encode() + b"\n" + bytes(range(64)))
    add(
        "wire_record",
        json.dumps({"id": row.get("id"), "version": wire["version"], "deleted_at": 1706702400123}),
    )
    for field in ("created_at", "updated_at"):
        if isinstance(row.get(field), str):
            add("timestamp", row[field])

add("legacy_row", json.dumps(records[:5]))
for text in [
    "2024-01-31T12:00:00Z",
    "2024-01-31T12:00:00.123+02:00",
    "2024-01-31T11:00:00-0100",
    "2024-01-31 12:00:00",
    "1706702400",
    "1706702400123",
    "9999-12-31T23:59:59.999Z",
]:
    add("timestamp", text)

manifest = {
    "node_id": "ARK-local-abc",
    "instance_id": origin,
    "version": "1.0",
    "last_updated": "2024-01-31T12:00:00Z",
    "node_count": 2,
    "manifest_hash": "sha256:" + "0" * 64,
    "listen_port": 9000,
    "nodes": [{"id": "a", "hash": "sha256:" + "1" * 64, "score": 0.1, "big": 18446744073709551616}],
}
body = {"manifest": manifest, "signature": "A" * 86 + "==", "pubkey": "A" * 43 + "="}
add("manifest", json.dumps(body))
add("manifest", json.dumps(manifest))

add(
    "signed_request",
    "\n".join(
        ["A" * 43 + "=", "1706702400000", "abcdefghijklmnop", "0123456789abcdef", "A" * 86 + "==", "{}"]
    ),
)

beacon = {
    "type": "beacon",
    "peer_id": origin,
    "peer_name": "ARK-local-abc",
    "address": "192.168.1.20",
    "port": 9000,
    "trust_tier": "discovered",
    "key_fingerprint": "abcd1234",
    "capabilities": ["lattice", "v2"],
    "version": "0.1.0",
    "timestamp": 1706702400123,
    "public_key": "A" * 43 + "=",
    "signature": "A" * 86 + "==",
}
add("beacon", json.dumps(beacon))
del beacon["public_key"], beacon["signature"]
add("beacon", json.dumps(beacon))

# Negentropy v1 messages: the protocol byte, then ranges.
add("negentropy", bytes([0x61]))
add("negentropy", bytes([0x61, 0x00, 0x00, 0x02, 0x00]))
add("negentropy", bytes([0x61, 0x00, 0x00, 0x01]) + bytes(16))

for url in [
    "http://192.168.1.20:9000",
    "http://peer.lan",
    "http://[::1]:9000/",
    "HTTP://Peer.Example:80/ark?x=1#f",
    "peer.lan:9000",
]:
    add("peer_url", url)

page = json.dumps({"instanceId": origin, "records": [], "last_seq": 0})
for request in [
    "GET /federation/info\n\n",
    "GET /federation/v2/changes?after=0&limit=5&max_bytes=100&types=a,b\n\n",
    "POST /federation/sync\ncontent-type: application/json\n\n"
    + json.dumps({"instanceId": "peer", "nodes": records[:3]}),
    "POST /federation/v2/push\nx-ark-key: " + "A" * 43 + "=\n\n" + page,
    "POST /manifest\n\n" + json.dumps(body),
    "POST /sync\n\n" + json.dumps({"manifest_hash": "sha256:00", "hashes": ["a"]}),
    "GET /discover\n\n",
    "GET /federation/nodes?since=0\n\n",
    "POST /federation/v2/fetch?rank=1\n\n" + "x" * 32,
    "POST /federation/v2/reconcile\n\n\x61",
    "GET /\n\n",
    "GET /metrics\n\n",
    "OPTIONS /api/lattice/nodes\n\n",
]:
    add("routes", request)

# The streaming reader reads what the whole reader reads; the first byte sets how many
# bytes each read hands it.
for chunk in (1, 7, 63):
    add("import_stream", bytes([chunk]) + json.dumps(records[:4]).encode())
    add("import_stream", bytes([chunk]) + "\n".join(json.dumps(r) for r in records[:4]).encode())
    add("import_stream", bytes([chunk]) + json.dumps({"topics": [{"name": "t", "nodes": records[:2]}]}).encode())

# Answers from peers and from a running server, in the shapes protocol/ writes.
stats = {"totalSyncs": 3, "successfulSyncs": 2, "failedSyncs": 1, "nodesReceived": 5,
         "nodesShared": 4, "nodesSent": 4, "conflictsResolved": 0}
info = {"instanceId": origin, "instanceName": "ARK-local-abc", "instanceType": "local",
        "federationMode": "p2p", "listenPort": 9000, "hubUrl": None, "autoSync": True,
        "syncInterval": 60000, "peers": ["http://192.168.1.20:9000"], "activePeers": [],
        "stats": stats, "timestamp": 1706702400123, "protocols": ["ark-lattice-v2"],
        "publicKey": "A" * 43 + "=", "nodeCount": 2, "version": "0.1.0"}
for answer in [
    info,
    {"instanceId": origin, "peers": ["http://a:9000"], "activePeers": [], "timestamp": 1},
    {"imported": 1, "conflicts": 0, "total": 1, "rejected": []},
    {"instanceId": origin, "count": 1, "nodes": records[:1]},
    {"delta_count": 1, "nodes": records[:1]},
    {"status": "ok", "info": info, "isRunning": True, "activePeers": [], "stats": stats},
    {"status": "synced", "result": [{"peerUrl": "http://a:9000", "peer": "http://a:9000",
                                    "success": True, "result": {"sent": 1, "received": 2},
                                    "nodesSent": 1, "nodesReceived": 2}]},
    {"status": "added", "peerUrl": "http://a:9000", "totalPeers": 1},
    {"status": "removed", "peerUrl": "http://a:9000", "totalPeers": 0},
    {"status": "auto-sync started", "interval": 60000},
    {"status": "discovered", "peers": ["http://a:9000"], "totalPeers": 1},
]:
    add("peer_answers", json.dumps(answer))

# The feed's answers (with the last wire record as their one record), an export page
# and a verify report, as the serving node and a running server write them.
for answer in [
    {"instanceId": origin, "epoch": "ab" * 16, "records": [wire], "last_seq": 7, "more": True},
    {"instanceId": origin, "epoch": "ab" * 16, "records": [], "last_seq": 0},
    {"records": [wire], "more": False, "missing": 2, "ranked": [1, 0]},
    {"nodes": records[:2], "next": records[1].get("id") if len(records) > 1 else None,
     "left_out": 0},
    {"store": "/var/lib/ark-lattice/lattice.redb", "ok": False,
     "pages": {"status": "damaged", "reason": "checksum"},
     "pages_after_moving_aside": {"status": "clean"},
     "records": {"status": "read", "nodes": 2, "tombstones": 0, "conflicts": 0, "changes": 2,
                 "signed": 1, "unchecked_signatures": 1, "moved_aside_before": 0,
                 "damaged": [{"table": "nodes", "id": "a", "reason": "hash"}]}},
    {"store": "s", "ok": False, "pages": {"status": "skipped"},
     "records": {"status": "not_read", "reason": "stopped", "damaged": []}},
]:
    add("peer_answers", json.dumps(answer))

# The control API's lattice and trust answers, as the CLI reads them back.
for answer in [
    {"deleted": "a", "already_deleted": False},
    {"id": "a", "outcome": "added"},
    {"id": "a", "outcome": "unchanged"},
    {"count": 0, "conflicts": []},
    {"purged_tombstones": 3, "older_than_days": 30},
    {"count": 0, "keys": []},
    {"action": "added", "entry": {"public_key": "AA==", "tier": "core", "source": "cli"}},
    {"nodes": [dict(row, hash="sha256:" + "ab" * 32, version="1700000000000-0000-" + "cd" * 32, seq=1) for row in rows()[:2] if isinstance(row, dict)]},
]:
    add("peer_answers", json.dumps(answer))

# Reconcile answers (headers, an empty line, the negentropy message) and requests (a
# `types` line standing for the query parameter).
negentropy = bytes([0x61, 0x00, 0x00, 0x02, 0x00])
for head in [
    f"x-ark-instance: {origin}\nx-ark-epoch: {'ab' * 16}\nx-ark-last-seq: 17\n",
    f"X-Ark-Instance: {origin}\nx-ark-epoch: e\nx-ark-last-seq: 0\ntypes: note,field%20log\n",
    "types: a, b,,c\n",
]:
    add("reconcile", head.encode() + b"\n" + negentropy)

# gzip bodies: a compact page's as the serving node writes it (deflated JSON, stored
# signatures), gzip's own of text, and a small bomb.
import gzip
import zlib

page_text = b'{"records":[{"id":"a"}],"last_seq":1,"more":false}\n'
signatures = bytes(range(64)) * 3
deflated = zlib.compressobj(6, zlib.DEFLATED, -15)
stored = zlib.compressobj(0, zlib.DEFLATED, -15)
body = deflated.compress(page_text) + deflated.flush(zlib.Z_SYNC_FLUSH)
body += stored.compress(signatures) + stored.flush(zlib.Z_FINISH)
whole = page_text + signatures
crc = zlib.crc32(whole).to_bytes(4, "little") + len(whole).to_bytes(4, "little")
add("gzip", b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + body + crc)
add("gzip", gzip.compress(b'{"nodes":[]}' * 20))
add("gzip", gzip.compress(bytes(200_000)))

# TLS files: a certificate and key made by openssl when it is there, and the
# fingerprint forms --tls-pin takes.
pins = ["sha256:" + "ab" * 32, "AB:" * 31 + "AB", "SHA256 Fingerprint=" + "0A:" * 31 + "0A"]
try:
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        for curve in ("ec", "rsa"):
            cert, key = os.path.join(scratch, "c.pem"), os.path.join(scratch, "k.pem")
            options = ["-pkeyopt", "ec_paramgen_curve:P-256"] if curve == "ec" else ["-pkeyopt", "rsa_keygen_bits:2048"]
            subprocess.run(
                ["openssl", "req", "-x509", "-newkey", curve, *options, "-nodes",
                 "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=localhost"],
                check=True, capture_output=True,
            )
            with open(cert, "rb") as c, open(key, "rb") as k:
                add("tls_files", c.read() + b"\n\0\n" + k.read() + b"\n\0\n" + pins[0].encode())
except (OSError, subprocess.CalledProcessError):
    print("openssl not found; tls_files is seeded with PEM shapes only", file=sys.stderr)
for pin in pins:
    add("tls_files", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n\n\0\n\n\0\n" + pin.encode())
