//! sync_client lock handling: planner and executor.
