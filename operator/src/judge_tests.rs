//! Judge tests (placeholder).
