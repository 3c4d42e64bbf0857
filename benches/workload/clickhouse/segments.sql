-- The segments of tessera/setup_segments.sql, as views over their definitions.
CREATE OR REPLACE VIEW recent_buyers AS
  SELECT DISTINCT profile_id FROM orders WHERE ordered_at >= toDateTime64('2025-12-02 00:00:00', 6, 'UTC') AND profile_id IS NOT NULL;
CREATE OR REPLACE VIEW high_value AS
  SELECT profile_id FROM orders WHERE profile_id IS NOT NULL GROUP BY profile_id HAVING sum(amount) >= 500;
CREATE OR REPLACE VIEW web_active AS
  SELECT DISTINCT profile_id FROM web_events WHERE ts >= toDateTime64('2025-12-02 00:00:00', 6, 'UTC') AND profile_id IS NOT NULL;
CREATE OR REPLACE VIEW win_back AS
  SELECT profile_id FROM high_value EXCEPT SELECT profile_id FROM recent_buyers;
