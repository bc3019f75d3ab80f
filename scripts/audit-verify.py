#!/usr/bin/env python3
"""Verify a skelm audit chain without skelm: every hash, every link, and the
signed checkpoints (when the `cryptography` package is installed), through the
sealed segments (audit/segments/000001.jsonl, ...) and then the live audit.jsonl.
A directory written by `skelm audit export --to DIR` (the chain several gateways
share) verifies the same way: its checkpoints name the gateway that signed them,
and audit.keys.jsonl holds each gateway's public keys.

    python3 scripts/audit-verify.py STATE_DIR

Exit status 0 when the chain is intact, 1 with the first break on stdout.
"""
import hashlib, json, os, re, sys

def canonical(entry):
    body = {k: v for k, v in entry.items() if k != "entryHash"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

def files(state):
    seg = os.path.join(state, "audit", "segments")
    names = [n for n in (os.listdir(seg) if os.path.isdir(seg) else []) if re.fullmatch(r"\d+\.jsonl", n)]
    out = [(f"segments/{n}", os.path.join(seg, n), os.path.join(seg, n[:-6] + ".checkpoints.jsonl"), True)
           for n in sorted(names, key=lambda n: int(n[:-6]))]
    return out + [("audit.jsonl", os.path.join(state, "audit.jsonl"), os.path.join(state, "audit.checkpoints.jsonl"), False)]

def main(state):
    try:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
        load = lambda hexkey: Ed25519PublicKey.from_public_bytes(bytes.fromhex(hexkey.strip()))
        pub = os.path.join(state, "audit.pub")
        key = load(open(pub).read()) if os.path.exists(pub) else None
        keys_path, keys = os.path.join(state, "audit.keys.jsonl"), {}
        for l in (open(keys_path) if os.path.exists(keys_path) else []):
            if l.strip():
                k = json.loads(l)
                keys.setdefault(k["gateway"], []).append(load(k["publicKey"]))
        checking = True
    except ImportError:
        checking = False

    def signed_by(cp, message):
        candidates = keys.get(cp["gateway"], []) if "gateway" in cp else [key] if key else []
        for k in candidates:
            try:
                k.verify(bytes.fromhex(cp["signature"]), message)
                return True
            except Exception:
                pass
        return False
    prev, expected, total_cps, per_file = "0" * 64, 1, 0, []
    for name, path, cp_path, sealed in files(state):
        checkpoints = [json.loads(l) for l in open(cp_path) if l.strip()] if os.path.exists(cp_path) else []
        wanted, hashes, first = {cp["seq"] for cp in checkpoints}, {}, expected
        if os.path.exists(path) or sealed:
            with open(path, encoding="utf-8") as f:
                for n, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    e = json.loads(line)
                    if e["seq"] != expected:
                        return f"gap in seq at line {n} of {name}: expected {expected}, found {e['seq']}"
                    if hashlib.sha256(canonical(e).encode()).hexdigest() != e["entryHash"]:
                        return f"bad hash at seq {e['seq']} (line {n} of {name})"
                    if e["prevHash"] != prev:
                        return f"broken link at seq {e['seq']} (line {n} of {name})"
                    if e["seq"] in wanted:
                        hashes[e["seq"]] = e["entryHash"]
                    prev, expected = e["entryHash"], expected + 1
        last = expected - 1
        for cp in checkpoints:
            message = f"skelm-audit-checkpoint\n{cp['seq']}\n{cp['entryHash']}\n{cp['timestamp']}"
            if "gateway" in cp:
                message += "\n" + cp["gateway"]
            if checking and not signed_by(cp, message.encode()):
                return f"bad signature on the checkpoint at seq {cp['seq']} ({name})"
            if cp["seq"] > last:
                return f"truncated: a checkpoint covers seq {cp['seq']} but {name} ends at seq {last}"
            if hashes.get(cp["seq"]) != cp["entryHash"]:
                return f"the entry at seq {cp['seq']} is not the one the checkpoint signed ({name})"
        if sealed and (last < first or not checkpoints or checkpoints[-1]["seq"] != last):
            return f"{name} does not end with a signed checkpoint of its last entry (seq {last})"
        total_cps += len(checkpoints)
        per_file.append(f"  {name}: seq {first}-{last}" if last >= first else f"  {name}: empty")
    signed = "signatures checked" if checking else "signatures not checked (pip install cryptography)"
    if len(per_file) > 1:
        print("\n".join(per_file))
    print(f"ok: {expected - 1} entries, {total_cps} checkpoints, {signed}")
    return None

if __name__ == "__main__":
    problem = main(sys.argv[1] if len(sys.argv) > 1 else ".skelm")
    if problem:
        print("BROKEN: " + problem)
        sys.exit(1)
