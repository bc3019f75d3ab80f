#!/usr/bin/env python3
"""Runs the test command with a bound on its time, and says why when it hangs.

`swift test` forwards its test binary's output only when it ends (it buffers
when its output is not a terminal), and it ends only once every process holding
that output has closed it. A test that never returns, or a process a test left
behind holding the output, would end the run as a silent timeout whose last
lines say nothing of where it stopped. This wrapper:

  - past --limit seconds, records what still runs under it (with each
    process's kernel wait), the log tails of gateways still running and where
    the test binary's threads wait; it then stops the test binary so `swift
    test` prints the output it held, and prints that record last, with the
    tests that had started and not ended, where a truncated log still shows it;
  - when the test binary has ended but `swift test` still waits for its output,
    names the processes holding it and stops them, and fails the run.

It is a child subreaper (PR_SET_CHILD_SUBREAPER), so processes that outlive
their parents stay under it: none can escape the report or the stop.

Usage: test-watchdog.py --limit SECONDS -- COMMAND [ARGS...]
"""
import ctypes
import os
import re
import signal
import subprocess
import sys
import threading
import time

PR_SET_CHILD_SUBREAPER = 36
TEST_BINARY = "PackageTests.xctest"


def read(path, binary=False):
    try:
        with open(path, "rb") as f:
            data = f.read()
        return data if binary else data.decode(errors="replace")
    except OSError:
        return b"" if binary else ""


def processes():
    """pid -> (ppid, state, start ticks, cmdline) for every live process."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = read(f"/proc/{entry}/stat")
        if not stat:
            continue
        # The command name is in parentheses and may hold spaces or parentheses.
        fields = stat[stat.rfind(")") + 2:].split()
        cmd = read(f"/proc/{entry}/cmdline", binary=True).replace(b"\0", b" ").decode(errors="replace").strip()
        table[int(entry)] = (int(fields[1]), fields[0], int(fields[19]), cmd or stat[stat.find("(") + 1:stat.rfind(")")])
    return table


def descendants(root, table):
    children = {}
    for pid, (ppid, *_rest) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, stack = [], [root]
    while stack:
        for child in sorted(children.get(stack.pop(), [])):
            found.append(child)
            stack.append(child)
    return found


def pipes_of(pid):
    """The pipes `swift test` reads the test binary's output from."""
    found = set()
    for fd in (1, 2):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("pipe:"):
            found.add(target)
    return found


def writes(pid, fd):
    flags = re.search(r"^flags:\s+([0-7]+)", read(f"/proc/{pid}/fdinfo/{fd}"), re.M)
    return flags is not None and int(flags.group(1), 8) & os.O_ACCMODE != os.O_RDONLY


def holders(inodes, table, exclude):
    """Processes with the writing end of any of `inodes` (readlink texts such as pipe:[123]) open."""
    found = []
    for pid in table:
        if pid in exclude:
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes and writes(pid, fd):
                    found.append(pid)
                    break
            except OSError:
                pass
    return found


def describe(pid, table, ticks_now):
    ppid, state, start, cmd = table[pid]
    hz = os.sysconf("SC_CLK_TCK")
    age = (ticks_now - start) / hz
    wchan = read(f"/proc/{pid}/wchan") or "-"
    return f"  {pid:>7} ppid {ppid:>7}  {state} {age:8.1f}s  {wchan[:24]:<24} {cmd[:150]}"


def uptime_ticks():
    return float(read("/proc/uptime").split()[0]) * os.sysconf("SC_CLK_TCK")


def threads(pid):
    """Where the threads of `pid` wait in the kernel, counted by thread name and wait:
    a test that blocks a thread (a read, a waitpid) shows here; one that awaits
    does not hold a thread, and shows among the unfinished tests."""
    counts = {}
    for tid in os.listdir(f"/proc/{pid}/task") if os.path.isdir(f"/proc/{pid}/task") else []:
        name = read(f"/proc/{pid}/task/{tid}/comm").strip()
        wait = read(f"/proc/{pid}/task/{tid}/wchan").strip() or "-"
        key = (re.sub(r"\d+", "N", name), wait)
        counts[key] = counts.get(key, 0) + 1
    return [f"  {n:>3} x {name:<24} {wait}" for (name, wait), n in sorted(counts.items(), key=lambda kv: -kv[1])]


def gateway_logs(pids, table):
    lines = []
    for pid in pids:
        m = re.search(r"gateway start --config (\S+)/skelm\.config\.yaml", table[pid][3])
        if not m:
            continue
        tail = read(m.group(1) + "/gateway.log").splitlines()[-8:]
        lines.append(f"  gateway {pid} ({m.group(1)}), last lines of its log:")
        lines.extend("    " + t[:200] for t in tail)
    return lines


class Progress:
    """Forwards the test output as it comes, and keeps which tests started and have not ended."""
    STARTED = re.compile(r'Test (".*"|\S+) started\.$')
    ENDED = re.compile(r'Test (".*"|\S+) (?:with \d+ test cases? )?(?:passed|failed) after ')
    ANSI = re.compile(r"\x1b\[[0-9;]*m")

    def __init__(self, stream):
        self.running = {}
        self.thread = threading.Thread(target=self.forward, args=(stream,), daemon=True)
        self.thread.start()

    def forward(self, stream):
        for raw in iter(stream.readline, b""):
            sys.stdout.buffer.write(raw)
            sys.stdout.flush()
            line = self.ANSI.sub("", raw.decode(errors="replace")).strip()
            if (m := self.STARTED.search(line)) and m.group(1) != "run":
                self.running[m.group(1)] = time.monotonic()
            elif m := self.ENDED.search(line):
                self.running.pop(m.group(1), None)

    def unfinished(self):
        return [f"  {name[:200]}" for name in self.running]


def reap(keep):
    """Orphans reparented to this process, once dead: reaped so they do not linger
    as zombies. Never `keep` (the command), whose status Popen collects."""
    for pid, (ppid, state, *_rest) in processes().items():
        if ppid == os.getpid() and state == "Z" and pid != keep:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass


def kill_all(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def main():
    args = sys.argv[1:]
    if len(args) < 4 or args[0] != "--limit" or args[2] != "--":
        sys.exit(__doc__.split("\n\n")[-1])
    limit, command = float(args[1]), args[3:]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print("test-watchdog: cannot become a child subreaper; processes that outlive their parents escape the report",
              file=sys.stderr)
    started = time.monotonic()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    progress = Progress(child.stdout)
    binary, binary_pipes, binary_gone_at = None, set(), None
    report, failed = [], False
    while True:
        try:
            rc = child.wait(timeout=2)
            break
        except subprocess.TimeoutExpired:
            pass
        reap(child.pid)
        table = processes()
        below = descendants(os.getpid(), table)
        if binary is None or binary not in table:
            found = next((p for p in below if table[p][3].split(" ")[0].endswith(TEST_BINARY)), None)
            if found is not None and found != binary:
                binary, binary_pipes, binary_gone_at = found, pipes_of(found), None
            elif binary is not None and binary_gone_at is None:
                binary_gone_at = time.monotonic()
        if binary_gone_at is not None and time.monotonic() - binary_gone_at > 60:
            held = holders(binary_pipes, table, exclude={os.getpid(), child.pid})
            now = uptime_ticks()
            report += ["test-watchdog: the test binary ended over 60 s ago, but `swift test` still waits for its output,",
                       "held open by processes the tests left behind:"] + [describe(p, table, now) for p in held if p in table]
            kill_all(held)
            failed, binary_gone_at = True, float("inf")
        if time.monotonic() - started > limit:
            now = uptime_ticks()
            report += [f"test-watchdog: the tests had not ended after {limit:.0f} s.",
                       "What still ran under `swift test` (pid, parent, state, age, kernel wait, command):"]
            report += [describe(p, table, now) for p in below if p in table]
            report += gateway_logs(below, table)
            if binary in table:
                report += ["The test binary's threads (count, name, kernel wait):"] + threads(binary)
            # Everything but `swift test` itself first: with its test binary gone
            # it prints the output it held back, and ends.
            kill_all([p for p in below if p != child.pid])
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                kill_all([child.pid])
                child.wait()
            rc, failed = 124, True
            break
    progress.thread.join(timeout=30)
    if rc == 124:
        report += ["Tests that had started and not ended:"] + (progress.unfinished() or ["  (none: all had ended)"])
    reap(child.pid)
    table = processes()
    left = [p for p in descendants(os.getpid(), table) if table[p][1] != "Z"]
    if left:
        now = uptime_ticks()
        report += ["test-watchdog: still running after the tests ended, stopped now:"] + [describe(p, table, now) for p in left]
        kill_all(left)
    sys.stdout.flush()
    if report:
        print("\n".join(report), file=sys.stderr)
    sys.exit(rc if rc != 0 else (1 if failed else 0))


if __name__ == "__main__":
    main()
