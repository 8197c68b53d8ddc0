//! The global write barrier.
