"""Where shards are judged: in this process (local), by a Prefect work pool's workers, or on a Ray cluster; the
Prefect server a command-line run uses, and serving a build on a schedule."""
