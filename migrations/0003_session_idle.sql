-- Automatic logoff: when each browser session was last used. Sessions open before
-- this migration count as idle, so their staff sign in once more.
ALTER TABLE sessions ADD COLUMN last_seen_at TEXT NOT NULL DEFAULT '1970-01-01T00:00:00Z';
