"""The benchmark workload on Celery: a one-step workflow, {x} -> {x+1}."""
import os

# Redis is both broker and result backend.
from celery import Celery
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6399/0")
celery_app = Celery("bench", broker=REDIS, backend=REDIS)
celery_app.conf.update(worker_prefetch_multiplier=1, task_acks_late=False, result_expires=3600)

@celery_app.task(name="bench.inc")
def inc(x):
    return {"x": x + 1}

