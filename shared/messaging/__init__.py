"""Queue messaging: the message models, sending them, the retry ladder, dead letters and their sweep.

Both queue consumers (`leads-inbound` → ingestion, `notifications` → the notifier) run each
message through `processor.process`, which parses it at the edge and gives it one outcome:
handled, re-queued with a delay, or dead-lettered with its reason.
"""
