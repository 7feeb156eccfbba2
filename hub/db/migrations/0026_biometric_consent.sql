-- Biometric consent and the per-terminal enrolment registry (issue 14 §4; hub/db/biometric_consent.py,
-- hub/domain/biometric_consent.py, docs/privacy.md).

-- Who consented to fingerprint enrolment, to which version of the notice (its text lives in
-- hub/domain/biometric_consent.py NOTICES, every published version kept), who recorded it
-- (the student themself, or an admin for consent given on paper), and the withdrawal.
-- Rows are never deleted by the hub: a withdrawn consent stays as the record of what was asked
-- and when it ended. No foreign key to students: the record outlives the account (an erasure
-- keeps `student_id`, a random id, and pseudonymises the account behind it; docs/privacy.md).
CREATE TABLE biometric_consents (
    id                bigserial PRIMARY KEY,
    student_id        text NOT NULL,
    notice_version    text NOT NULL CHECK (notice_version <> ''),
    given_by          text NOT NULL,
    given_at          timestamptz NOT NULL,
    withdrawn_at      timestamptz NULL,
    withdrawn_by      text NULL,
    withdrawal_reason text NULL CHECK (char_length(withdrawal_reason) <= 500),
    CHECK ((withdrawn_at IS NULL) = (withdrawn_by IS NULL)),
    CHECK (withdrawn_at IS NULL OR withdrawn_at >= given_at)
);
-- At most one active consent per student.
CREATE UNIQUE INDEX biometric_consents_one_active ON biometric_consents (student_id) WHERE withdrawn_at IS NULL;
CREATE INDEX biometric_consents_student ON biometric_consents (student_id, given_at);

-- The enrolment registry is terminal_roster (migration 0020): a row's `page` is the student's
-- fingerprint page on that terminal. It now records the consent the page rests on, the commands
-- whose acks confirm the latest change of the page (enrolment, or its removal), and a removed
-- page until the terminal has confirmed the removal (and after, as the record of it).
-- consent_ref was a placeholder (text, always NULL so far): it becomes the consent's id.
ALTER TABLE terminal_roster
    ALTER COLUMN consent_ref TYPE bigint USING consent_ref::bigint,
    ADD CONSTRAINT terminal_roster_consent_ref_fkey FOREIGN KEY (consent_ref) REFERENCES biometric_consents (id),
    ADD COLUMN page_commands uuid[] NOT NULL DEFAULT '{}',
    ADD COLUMN removed_page  integer CHECK (removed_page BETWEEN 0 AND 65535),
    ADD COLUMN removed_at    timestamptz,
    ADD CONSTRAINT terminal_roster_removed_when CHECK ((removed_page IS NULL) = (removed_at IS NULL)),
    DROP CONSTRAINT terminal_roster_check,
    ADD CONSTRAINT terminal_roster_holds_something CHECK (pin IS NOT NULL OR page IS NOT NULL OR removed_page IS NOT NULL);
CREATE INDEX terminal_roster_consent ON terminal_roster (consent_ref) WHERE consent_ref IS NOT NULL;
