#!/usr/bin/env python3
"""Verify a skelm audit chain without skelm: every hash, every link, and the
signed checkpoints (when the `cryptography` package is installed).

    python3 scripts/audit-verify.py STATE_DIR

Exit status 0 when the chain is intact, 1 with the first break on stdout.
"""
import hashlib, json, os, sys

def canonical(entry):
    body = {k: v for k, v in entry.items() if k != "entryHash"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

def main(state):
    prev, expected, hashes = "0" * 64, 1, {}
    with open(os.path.join(state, "audit.jsonl"), encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            e = json.loads(line)
            if e["seq"] != expected:
                return f"gap in seq at line {n}: expected {expected}, found {e['seq']}"
            if hashlib.sha256(canonical(e).encode()).hexdigest() != e["entryHash"]:
                return f"bad hash at seq {e['seq']} (line {n})"
            if e["prevHash"] != prev:
                return f"broken link at seq {e['seq']} (line {n})"
            prev, hashes[e["seq"]], expected = e["entryHash"], e["entryHash"], expected + 1
    last = expected - 1
    path = os.path.join(state, "audit.checkpoints.jsonl")
    checkpoints = [json.loads(l) for l in open(path)] if os.path.exists(path) else []
    try:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
        key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(open(os.path.join(state, "audit.pub")).read().strip()))
    except ImportError:
        key = None
    for cp in checkpoints:
        message = f"skelm-audit-checkpoint\n{cp['seq']}\n{cp['entryHash']}\n{cp['timestamp']}".encode()
        if key is not None:
            try:
                key.verify(bytes.fromhex(cp["signature"]), message)
            except Exception:
                return f"bad signature on the checkpoint at seq {cp['seq']}"
        if cp["seq"] > last:
            return f"truncated: a checkpoint covers seq {cp['seq']} but the log ends at seq {last}"
        if hashes.get(cp["seq"]) != cp["entryHash"]:
            return f"the entry at seq {cp['seq']} is not the one the checkpoint signed"
    signed = "signatures checked" if key is not None else "signatures not checked (pip install cryptography)"
    print(f"ok: {last} entries, {len(checkpoints)} checkpoints, {signed}")
    return None

if __name__ == "__main__":
    problem = main(sys.argv[1] if len(sys.argv) > 1 else ".skelm")
    if problem:
        print("BROKEN: " + problem)
        sys.exit(1)
