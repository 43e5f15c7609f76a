-- Hubbub's history in PostgreSQL, version 1: the same shape as the SQLite schema
-- (server/src/store/migrations.rs), plus `rooms`, whose row for a room is locked by the
-- transaction that allocates that room's next sequence numbers, so hubs sharing the database
-- take turns per room and `seq` stays gap-free.
CREATE TABLE meta (key text PRIMARY KEY, value text NOT NULL);
-- the epoch names this database: a resume cursor from another one is recognised as stale
INSERT INTO meta (key, value) VALUES ('epoch', substr(md5(random()::text || clock_timestamp()::text), 1, 16));
CREATE TABLE rooms (
    room text PRIMARY KEY,
    head bigint NOT NULL
);
CREATE TABLE messages (
    room text NOT NULL,
    seq bigint NOT NULL,
    author text NOT NULL,
    text text NOT NULL,
    ts bigint NOT NULL,
    client_id text NOT NULL,
    PRIMARY KEY (room, seq)
);
CREATE UNIQUE INDEX messages_by_client_id ON messages (room, client_id);
