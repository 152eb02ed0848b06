-- Who may reach a recording is fixed when it is recorded (issue 13): the staff linked
-- to its event when it started (administrators always may). Later edits of the event
-- change nothing here. Recordings made before are given their event's staff as it
-- stands now, which is all that is known of them.
--
-- recording_patients holds from now on the patients present while it recorded (and
-- the record a Public Conference is tied to); the rows of recordings made before stay.

CREATE TABLE recording_staff (
    recording_id INTEGER NOT NULL REFERENCES recordings (id) ON DELETE CASCADE,
    staff_id     INTEGER NOT NULL REFERENCES staff (id),
    PRIMARY KEY (recording_id, staff_id)
);

INSERT INTO recording_staff (recording_id, staff_id)
    SELECT recordings.id, event_staff.staff_id
    FROM recordings JOIN event_staff ON event_staff.event_id = recordings.event_id;
