-- Version 3: search (see `crate::store`), as in the SQLite schema's version 3. `words` holds a
-- message's words as the hub computes them (`hubbub_shared::search`), taken as they are
-- (`array_to_tsvector`: no parser, no stemming, so both engines find the same messages), plus
-- its room as the lexeme `#ROOM`, so one GIN lookup narrows to the asker's rooms. Rows that
-- change another and deleted messages have none.
ALTER TABLE messages ADD COLUMN words tsvector;
-- what the writer stores for a message: its words (the hub's, space-separated) and its room
CREATE FUNCTION hubbub_words(words text, room text) RETURNS tsvector LANGUAGE sql IMMUTABLE
    AS $$ SELECT array_to_tsvector(string_to_array(words, ' ')) || array_to_tsvector(ARRAY['#' || room]) $$;
-- messages stored before this version: PostgreSQL's own idea of letters and digits, which is
-- the hub's for the scripts its locale knows
UPDATE messages
   SET words = array_to_tsvector(array_remove(regexp_split_to_array(lower(text), '[^[:alnum:]]+'), ''))
               || array_to_tsvector(ARRAY['#' || room])
 WHERE edits IS NULL AND NOT deleted;
CREATE INDEX messages_by_words ON messages USING gin (words);
