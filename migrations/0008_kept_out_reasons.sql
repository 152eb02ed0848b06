-- Why a person is kept out is stored as the conference's reason (removed, turned
-- away), no longer as the websocket close code their page was sent: close codes are
-- the wire protocol's, and the web edge chooses them.

ALTER TABLE conference_people
    ADD COLUMN kept_out TEXT CHECK (kept_out IN ('removed', 'turned_away'));
UPDATE conference_people
    SET kept_out = CASE barred WHEN 4430 THEN 'removed' WHEN 4431 THEN 'turned_away' END;
ALTER TABLE conference_people DROP COLUMN barred;
