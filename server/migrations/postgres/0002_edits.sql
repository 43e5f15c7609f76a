-- Version 2: edits and deletions (see `crate::store`), as in the SQLite schema's version 2.
-- `author_key` says who may change a row (a digest of the author's identity); an edit or a
-- deletion is a row of its own whose `edits` names the row it changed; the changed row keeps
-- the latest text and says `edited` or `deleted`.
ALTER TABLE messages ADD COLUMN author_key text;
ALTER TABLE messages ADD COLUMN edits bigint;
ALTER TABLE messages ADD COLUMN edited boolean NOT NULL DEFAULT false;
ALTER TABLE messages ADD COLUMN deleted boolean NOT NULL DEFAULT false;
