//! The config file: raw serde types, defaults, and the validated `Config`.
