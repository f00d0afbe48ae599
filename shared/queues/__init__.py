"""Azure Storage queues: names, a base64 sender with timeouts, dead letters on `<queue>-poison`."""
