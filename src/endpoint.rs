//! The HTTP endpoint: /metrics, /healthz and /readyz.
