"""The benchmark workload on Temporal: a one-step workflow, {x} -> {x+1}."""
from datetime import timedelta

# A workflow with one activity.
from temporalio import activity, workflow

@activity.defn
async def inc_activity(x: int) -> dict:
    return {"x": x + 1}

@workflow.defn
class IncWorkflow:
    @workflow.run
    async def run(self, x: int) -> dict:
        return await workflow.execute_activity(inc_activity, x, start_to_close_timeout=timedelta(seconds=30))
