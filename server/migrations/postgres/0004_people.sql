-- Version 4: people's own records (see `crate::store`), as in the SQLite schema's version 4:
-- direct conversations with their two people (digests of identities) and nicknames, and each
-- person's read position per room.
CREATE TABLE conversations (
    room text PRIMARY KEY,
    person_a text NOT NULL,
    nick_a text NOT NULL,
    person_b text NOT NULL,
    nick_b text NOT NULL,
    created bigint NOT NULL
);
CREATE INDEX conversations_by_a ON conversations (person_a);
CREATE INDEX conversations_by_b ON conversations (person_b);
CREATE TABLE read_marks (
    person text NOT NULL,
    room text NOT NULL,
    seq bigint NOT NULL,
    PRIMARY KEY (person, room)
);
