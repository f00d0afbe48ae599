"""Local stand-ins for Azure and Meta: the Functions host, the sandbox Graph API, the simulator."""
