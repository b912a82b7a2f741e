//! The Atlas Admin API client: the only code that speaks HTTP to Atlas.
