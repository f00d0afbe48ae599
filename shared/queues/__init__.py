"""The storage account: where it is (`connection`) and what its queues and tables are called (`names`)."""
