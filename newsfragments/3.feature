Durable storage: write-ahead log, hard state and snapshot files with group-commit fsync.
