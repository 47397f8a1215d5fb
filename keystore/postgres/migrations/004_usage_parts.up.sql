-- keygate schema, version 4: usage breakdowns.
--
-- The parts of a key's usage (by area, by answer class) are rows of
-- key_usage under ids "<key id>|area:<name>" and "<key id>|status:<class>".
-- A breakdown reads every id with one key's prefix; this index serves that
-- byte-wise range (~>=~, ~<~) whatever the database's collation.
CREATE INDEX key_usage_id_pattern ON key_usage (key_id text_pattern_ops, day);
