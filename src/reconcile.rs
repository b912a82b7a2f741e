//! The reconcile executor: one pass from plan to Atlas, parallel, rate-limited, retrying, exactly once.
