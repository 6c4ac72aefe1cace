-- App QR tokens already accepted at this terminal, kept until they expire, so a
-- screenshot cannot be replayed (even across a restart).
CREATE TABLE used_tokens (
    token_hash      TEXT PRIMARY KEY,
    expires_at_unix INTEGER NOT NULL
) STRICT;
