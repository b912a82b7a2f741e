//! The bundled fake Atlas: the private link API on loopback, with rate limits and fault injection.
