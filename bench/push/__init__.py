"""Push throughput: tidings's APNs and Web Push providers against aioapns and pywebpush on the same sandbox."""
