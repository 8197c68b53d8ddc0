//! sync log
