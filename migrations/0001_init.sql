-- clinicconf's first schema: staff, patients, event types, events, join links,
-- sign-in sessions, API tokens, the outbox and the audit log.
-- Times are UTC text, 'YYYY-MM-DDTHH:MM:SSZ', so that text order is time order.

CREATE TABLE staff (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    email         TEXT NOT NULL UNIQUE COLLATE NOCASE,
    phone         TEXT,                       -- E.164, or NULL
    password_hash TEXT,                       -- argon2id; NULL: cannot sign in
    is_admin      INTEGER NOT NULL DEFAULT 0 CHECK (is_admin IN (0, 1)),
    created_at    TEXT NOT NULL
);

CREATE TABLE patients (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    email         TEXT,
    phone         TEXT,                       -- E.164, or NULL
    record_number TEXT NOT NULL UNIQUE,
    created_at    TEXT NOT NULL
);

CREATE TABLE event_types (
    id                 INTEGER PRIMARY KEY,
    name               TEXT NOT NULL UNIQUE COLLATE NOCASE,
    colour             TEXT NOT NULL DEFAULT '#3a7bd5',
    video_conferencing INTEGER NOT NULL CHECK (video_conferencing IN (0, 1)),
    public_conference  INTEGER NOT NULL CHECK (public_conference IN (0, 1)),
    CHECK (public_conference = 0 OR video_conferencing = 1)
);

CREATE TABLE events (
    id                INTEGER PRIMARY KEY,
    title             TEXT NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    event_type_id     INTEGER NOT NULL REFERENCES event_types (id),
    start_at          TEXT NOT NULL,
    end_at            TEXT NOT NULL,
    status            TEXT NOT NULL DEFAULT 'scheduled' CHECK (status IN ('scheduled', 'cancelled')),
    -- Only for a Public Conference: the patient record it belongs to, if any.
    record_patient_id INTEGER REFERENCES patients (id),
    -- Bumped on every change, so calendar clients replace the old invitation.
    sequence          INTEGER NOT NULL DEFAULT 0,
    created_by        INTEGER REFERENCES staff (id),
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    CHECK (end_at > start_at)
);
CREATE INDEX events_by_start ON events (start_at);

CREATE TABLE event_staff (
    event_id INTEGER NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    staff_id INTEGER NOT NULL REFERENCES staff (id),
    PRIMARY KEY (event_id, staff_id)
);

CREATE TABLE event_patients (
    event_id   INTEGER NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    patient_id INTEGER NOT NULL REFERENCES patients (id),
    PRIMARY KEY (event_id, patient_id)
);

-- A join link's token is never stored: only its SHA-256 (to find the link) and a
-- salt from which the token is derived again with the server's secret key.
CREATE TABLE join_links (
    id         INTEGER PRIMARY KEY,
    event_id   INTEGER NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    kind       TEXT NOT NULL CHECK (kind IN ('staff', 'patient', 'public')),
    person_id  INTEGER,
    salt       BLOB NOT NULL,
    token_hash BLOB NOT NULL UNIQUE,
    -- 1: a staff member's own link from "Get My Conference Link", which stays when
    -- the event's list of people changes; 0: the link of a person on the event.
    self_issued INTEGER NOT NULL DEFAULT 0 CHECK (self_issued IN (0, 1)),
    created_at TEXT NOT NULL,
    CHECK ((kind = 'public') = (person_id IS NULL))
);
CREATE UNIQUE INDEX join_links_one_per_person ON join_links (event_id, kind, ifnull(person_id, 0));

CREATE TABLE sessions (
    id         INTEGER PRIMARY KEY,
    token_hash BLOB NOT NULL UNIQUE,
    staff_id   INTEGER NOT NULL REFERENCES staff (id) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);

CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY,
    token_hash   BLOB NOT NULL UNIQUE,
    staff_id     INTEGER NOT NULL REFERENCES staff (id) ON DELETE CASCADE,
    created_at   TEXT NOT NULL,
    last_used_at TEXT
);

-- The one-time link that lets the first administrator create an account.
CREATE TABLE setup_tokens (
    token_hash BLOB PRIMARY KEY,
    created_at TEXT NOT NULL
);

-- Messages waiting to be sent. The text is rendered at send time, so the
-- join link inside it is never stored.
CREATE TABLE outbox (
    -- AUTOINCREMENT: an id is never reused, so the sender's update of a message it
    -- has just sent can never land on a newer one.
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    kind            TEXT NOT NULL CHECK (kind IN ('invitation', 'join_link', 'cancellation')),
    channel         TEXT NOT NULL CHECK (channel IN ('email', 'sms')),
    event_id        INTEGER NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    recipient_kind  TEXT NOT NULL CHECK (recipient_kind IN ('staff', 'patient')),
    recipient_id    INTEGER NOT NULL,
    -- superseded: replaced, before it was sent, by a newer message of the same kind.
    -- saved: kept in data_dir/undelivered/, as no SMTP server or Vonage account is set up.
    status          TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'sent', 'failed', 'superseded', 'saved')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error      TEXT,
    created_at      TEXT NOT NULL,
    sent_at         TEXT
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);

CREATE TABLE audit_log (
    id           INTEGER PRIMARY KEY,
    at           TEXT NOT NULL,
    actor_kind   TEXT NOT NULL,   -- staff, patient, guest, system
    actor_id     INTEGER,
    action       TEXT NOT NULL,
    event_id     INTEGER,
    subject_kind TEXT,
    subject_id   INTEGER,
    detail       TEXT             -- JSON; never a token
);
CREATE INDEX audit_by_event ON audit_log (event_id);
