#!/usr/bin/env python3
"""An ARK Python federation client, as ARK's federation guide shows it: a PyNaCl key,
a manifest signed over json.dumps(manifest, sort_keys=True), registered at /manifest.

Usage: ark_python_client.py BASE_URL SEED_B64 MODE
  MODE = register   print the HTTP status and body of a good registration
         tamper     sign the manifest, then change one byte before sending
         keygen     print the base64 seed and public key (as ARK's snippet)
"""
import base64
import json
import sys
import urllib.error
import urllib.request

import nacl.encoding
import nacl.signing


def post(url, payload):
    data = json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def main():
    base, seed_b64, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    if mode == "keygen":
        key = nacl.signing.SigningKey.generate()
        print("Private Key:", key.encode(encoder=nacl.encoding.Base64Encoder).decode())
        print("Public Key:", key.verify_key.encode(encoder=nacl.encoding.Base64Encoder).decode())
        return
    signing_key = nacl.signing.SigningKey(base64.b64decode(seed_b64))
    pubkey = signing_key.verify_key.encode(encoder=nacl.encoding.Base64Encoder).decode()
    manifest = {
        "node_id": "ark-python-Zürich-α",
        "instance_type": "cloud",
        "version": "5.0.0",
        "last_updated": "2025-11-09T10:22:32Z",
        "trust_score": 0.75,
        "nodes": [
            {"id": "accelerate_launch", "type": "command_node",
             "hash": "sha256:" + "ab" * 32, "updated_at": "2025-11-09T10:22:32Z"},
        ],
    }
    message = json.dumps(manifest, sort_keys=True).encode()
    signature = base64.b64encode(signing_key.sign(message).signature).decode()
    if mode == "tamper":
        manifest["version"] = "5.0.1"
    status, body = post(base + "/manifest", {"manifest": manifest, "signature": signature, "pubkey": pubkey})
    print(status)
    print(body)


if __name__ == "__main__":
    main()
