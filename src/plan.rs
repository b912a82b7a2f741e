//! The plan: a pure comparison of desired state, ledger and remote listings.
