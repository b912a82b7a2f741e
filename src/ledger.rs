//! The ledger: what atlas-linkd has done, in SQLite, one row per link.
