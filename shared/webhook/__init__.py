"""The webhook edge: handshake, signature, envelope → one queue message per leadgen change."""
