//! C API of the global write barrier (see `crate::barrier`).
