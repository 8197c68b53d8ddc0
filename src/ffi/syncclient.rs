//! C API of the sync_client planner and executor (see `crate::syncclient`).
