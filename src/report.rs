//! Pass reports: the summary a user reads, as text or JSON.
