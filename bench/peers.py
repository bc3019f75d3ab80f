#!/usr/bin/env python3
"""Runs the skelm benchmark's workload on Temporal, Celery and DBOS, on this
machine, now, and prints one JSON object per peer:

    {"peer", "version", "seq_p50", "seq_p99", "runs_per_s", "tput_p99"}   (ms)
    {"peer", "error"}                                                      on failure

    peers.py [--quick] [--only temporal|celery|dbos]

Each peer is started on loopback and stopped again; nothing is left running.
"""
import asyncio, concurrent.futures, importlib.metadata as md, json, os, shutil, socket, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
QUICK = "--quick" in sys.argv
SEQ, TOTAL, CLIENTS = (50, 300, 32) if QUICK else (200, 2000, 32)


def pct(samples, p):
    s = sorted(samples)
    return s[min(len(s) - 1, int(len(s) * p))] if s else 0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("port %d never opened" % port)


def stop(proc, grace=10):
    """Stops a process we started, whatever signals it inherited as ignored."""
    if proc is None or proc.poll() is not None:
        return
    import signal
    os.killpg(proc.pid, signal.SIGTERM)   # the whole group: celery's prefork children too
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def measure(call):
    """`call(x)` runs one workflow and returns its output."""
    for i in range(10):
        call(i)
    seq = []
    for i in range(SEQ):
        t = time.perf_counter()
        assert call(i) == {"x": i + 1}
        seq.append((time.perf_counter() - t) * 1000)
    lat = []

    def one(i):
        t = time.perf_counter()
        assert call(i) == {"x": i + 1}
        return (time.perf_counter() - t) * 1000

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
        lat = list(pool.map(one, range(TOTAL)))
    elapsed = time.perf_counter() - start
    return {"seq_p50": pct(seq, 0.5), "seq_p99": pct(seq, 0.99), "runs_per_s": TOTAL / elapsed, "tput_p99": pct(lat, 0.99)}


def celery():
    port = free_port()
    tmp = tempfile.mkdtemp(prefix="bench-redis-")
    redis = subprocess.Popen(["redis-server", "--port", str(port), "--save", "", "--appendonly", "no", "--dir", tmp],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    env = dict(os.environ, BENCH_REDIS_URL="redis://127.0.0.1:%d/0" % port, PYTHONPATH=HERE)
    worker = None
    try:
        wait_port(port)
        worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "celery_app:celery_app", "worker", "--pool=prefork",
                                   "--concurrency=2", "--loglevel=WARNING", "--without-gossip", "--without-mingle"],
                                  cwd=HERE, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        os.environ["BENCH_REDIS_URL"] = env["BENCH_REDIS_URL"]
        import celery_app as peer_apps
        time.sleep(3)
        result = measure(lambda x: peer_apps.inc.delay(x).get(timeout=30))
        redis_version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()[2]
        result["version"] = "celery %s, redis %s" % (md.version("celery"), redis_version.replace("v=", ""))
        return result
    finally:
        stop(worker)
        stop(redis)
        shutil.rmtree(tmp, ignore_errors=True)


def dbos():
    from dbos import DBOS
    tmp = tempfile.mkdtemp(prefix="bench-dbos-")
    try:
        DBOS(config={"name": "bench", "system_database_url": "sqlite:///%s/dbos.sqlite" % tmp, "log_level": "ERROR"})

        @DBOS.step()
        def inc_step(x):
            return {"x": x + 1}

        @DBOS.workflow()
        def inc_workflow(x):
            return inc_step(x)

        DBOS.launch()
        result = measure(inc_workflow)
        result["version"] = "dbos %s (SQLite system database)" % md.version("dbos")
        DBOS.destroy()
        return result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def temporal():
    from temporalio.client import Client
    from temporalio.worker import Worker
    import temporal_app as peer_apps
    port, ui = free_port(), free_port()
    tmp = tempfile.mkdtemp(prefix="bench-temporal-")
    binary = shutil.which("temporal") or os.path.join(os.path.dirname(sys.executable), "temporal")
    server = subprocess.Popen([binary, "server", "start-dev", "--headless", "--port", str(port), "--ui-port", str(ui),
                               "--db-filename", os.path.join(tmp, "temporal.db"), "--log-level", "error"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    loop = asyncio.new_event_loop()
    try:
        wait_port(port, 120)

        async def setup():
            client = await Client.connect("127.0.0.1:%d" % port)
            worker = Worker(client, task_queue="bench", workflows=[peer_apps.IncWorkflow], activities=[peer_apps.inc_activity])
            task = asyncio.ensure_future(worker.run())
            return client, worker, task

        client, worker, task = loop.run_until_complete(setup())
        import threading
        t = threading.Thread(target=loop.run_forever, daemon=True)
        t.start()
        counter = [0]

        def call(x):
            counter[0] += 1
            fut = asyncio.run_coroutine_threadsafe(
                client.execute_workflow(peer_apps.IncWorkflow.run, x, id="inc-%d-%d-%f" % (x, counter[0], time.time()), task_queue="bench"), loop)
            return fut.result(60)

        result = measure(call)
        version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip()
        result["version"] = "temporalio %s, %s" % (md.version("temporalio"), version.replace("temporal version ", "dev server "))
        asyncio.run_coroutine_threadsafe(worker.shutdown(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        return result
    finally:
        stop(server, 20)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    only = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else None
    for name, fn in (("temporal", temporal), ("celery", celery), ("dbos", dbos)):
        if only and name != only:
            continue
        try:
            out = fn()
            out["peer"] = name
        except Exception as e:  # a peer that cannot run here is reported, not fatal
            out = {"peer": name, "error": "%s: %s" % (type(e).__name__, e)}
        print(json.dumps(out), flush=True)
