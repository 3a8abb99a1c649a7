"""Push delivery: the job queue, the worker that drains it, the retry policy and the delivery log."""
